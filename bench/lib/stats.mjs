// @ts-check
// Small statistics helpers: medians of rounds and percentiles of latency samples.

/** @param {number[]} xs */
export function median(xs) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/**
 * Percentile by linear interpolation between closest ranks.
 * @param {ArrayLike<number>} sorted ascending
 * @param {number} p in [0, 100]
 */
export function percentile(sorted, p) {
  const n = sorted.length;
  if (n === 0) return NaN;
  const rank = (p / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** @param {number[]} xs */
export function sortedCopy(xs) {
  return Float64Array.from(xs).sort();
}

/** @param {number[]} xs */
export function minMax(xs) {
  let min = Infinity;
  let max = -Infinity;
  for (const x of xs) {
    if (x < min) min = x;
    if (x > max) max = x;
  }
  return { min, max };
}

/**
 * Format a number with `d` decimals, or '–' when it is not a number.
 * @param {number | undefined} x
 */
export function fmt(x, d = 0) {
  if (x === undefined || x === null || !Number.isFinite(x)) return '–';
  return x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
}

/** @param {number} bytes */
export function mb(bytes) {
  return bytes / (1024 * 1024);
}
