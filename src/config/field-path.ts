// How a problem names the field it is about: `upstreams[0].keys[2].key`, or `(root)` for the document.
// A name from the document is shown only when it could be a field name (the schema's are all letters):
// a secret pasted where a field name goes (`- sk-abc: x`) must not come back in an error.

const FIELD_NAME = /^[A-Za-z]{1,24}$/;

/** A name the document used, as a problem may show it. */
export function showName(name: string): string {
  return FIELD_NAME.test(name) ? name : '…';
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else {
      const name = typeof p === 'string' ? showName(p) : '…';
      out += name === '…' ? '["…"]' : out === '' ? name : `.${name}`;
    }
  }
  return out || '(root)';
}
