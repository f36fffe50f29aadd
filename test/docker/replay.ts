// Replays a Dockerfile's stages into directories, since no Docker engine runs here: each stage gets a
// directory standing for its filesystem root; COPY copies exactly what it names (from the build context,
// minus .dockerignore, or from an earlier stage), WORKDIR / ENV / USER / ENTRYPOINT / CMD / HEALTHCHECK
// are recorded, and each RUN command is one the replay knows how to perform here. A RUN it does not know
// fails the replay: the Dockerfile and this file change together.
import { spawnSync } from 'node:child_process';
import { chownSync, cpSync, existsSync, mkdirSync, readFileSync, realpathSync, statSync, symlinkSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { parseDockerfile, splitWords, type Form, type Stage } from './dockerfile.js';
import { isIgnored, parseDockerignore } from './dockerignore.js';

export interface ReplayedStage {
  readonly name: string;
  /** The directory standing for the stage's `/`. */
  readonly root: string;
  readonly workdir: string;
  readonly env: ReadonlyMap<string, string>;
  readonly user: string;
  readonly entrypoint: Form | undefined;
  readonly cmd: Form | undefined;
  readonly healthcheck: { readonly options: Readonly<Record<string, string>>; readonly form: Form } | undefined;
  readonly expose: readonly string[];
  readonly volumes: readonly string[];
  /** Every RUN as written, with what the replay did for it. */
  readonly runs: readonly { readonly command: string; readonly did: string }[];
}

export interface ReplayOptions {
  /** The build context (the repository). */
  readonly context: string;
  /** Where the stages' roots are made. */
  readonly into: string;
  /** uid/gid standing for the image's non-root user (chown targets); undefined: leave ownership. */
  readonly owner: { readonly uid: number; readonly gid: number } | undefined;
  /** Extra flags for `npm ci` (the local cache). */
  readonly npmFlags: readonly string[];
}

export function replayDockerfile(o: ReplayOptions): ReplayedStage[] {
  const stages = parseDockerfile(readFileSync(join(o.context, 'Dockerfile'), 'utf8'));
  const ignore = parseDockerignore(existsSync(join(o.context, '.dockerignore')) ? readFileSync(join(o.context, '.dockerignore'), 'utf8') : '');
  const done: ReplayedStage[] = [];
  stages.forEach((stage, i) => done.push(replayStage(stage, i, done, ignore, o)));
  return done;
}

/** An image path (absolute, or relative to the workdir) inside a stage root. */
export function inRoot(root: string, workdir: string, path: string): string {
  return join(root, posix.resolve(workdir, path));
}

function replayStage(stage: Stage, index: number, earlier: readonly ReplayedStage[], ignore: ReturnType<typeof parseDockerignore>, o: ReplayOptions): ReplayedStage {
  const name = stage.name ?? `stage-${index}`;
  const root = join(o.into, name);
  mkdirSync(root, { recursive: true });
  let workdir = '/';
  let user = 'root';
  const env = new Map<string, string>();
  let entrypoint: Form | undefined;
  let cmd: Form | undefined;
  let healthcheck: ReplayedStage['healthcheck'];
  const expose: string[] = [];
  const volumes: string[] = [];
  const runs: { command: string; did: string }[] = [];

  for (const ins of stage.instructions) {
    switch (ins.kind) {
      case 'WORKDIR':
        workdir = posix.resolve(workdir, ins.path);
        mkdirSync(join(root, workdir), { recursive: true });
        break;
      case 'COPY': {
        const from = ins.from === undefined ? undefined : earlier.find((s) => s.name === ins.from);
        if (ins.from !== undefined && from === undefined) throw new Error(`COPY --from=${ins.from}: no earlier stage of that name`);
        const dest = ins.dest;
        if (ins.sources.length > 1 && !dest.endsWith('/')) throw new Error(`COPY of several sources needs a directory destination: ${dest}`);
        for (const source of ins.sources) {
          const named = from === undefined ? contextPath(o.context, source, ignore) : join(from.root, posix.resolve(from.workdir, source));
          // A stage's full install is a link to this machine's (run()): what it stands for is copied.
          const src = existsSync(named) ? realpathSync(named) : named;
          if (!existsSync(src)) throw new Error(`COPY ${source}: not there${from ? ` in stage ${from.name}` : ' in the build context'}`);
          const isDir = statSync(src).isDirectory();
          const target = isDir || !dest.endsWith('/') ? inRoot(root, workdir, dest) : join(inRoot(root, workdir, dest), posix.basename(source));
          mkdirSync(isDir ? target : dirname(target), { recursive: true });
          cpSync(src, target, {
            recursive: true,
            verbatimSymlinks: true,
            // What .dockerignore leaves out of the context never reaches the image.
            filter: (p) => from !== undefined || !isIgnored(ignore, relative(o.context, p).split('\\').join('/')),
          });
        }
        break;
      }
      case 'RUN':
        for (const command of commandsOf(ins.form)) runs.push({ command, did: run(command, root, workdir, o) });
        break;
      case 'ENV':
        for (const [k, v] of ins.vars) env.set(k, v);
        break;
      case 'USER':
        user = ins.user;
        break;
      case 'ENTRYPOINT':
        entrypoint = ins.form;
        cmd = undefined;
        break;
      case 'CMD':
        cmd = ins.form;
        break;
      case 'HEALTHCHECK':
        healthcheck = ins.form === undefined ? undefined : { options: ins.options, form: ins.form };
        break;
      case 'EXPOSE':
        expose.push(...splitWords(ins.args));
        break;
      case 'VOLUME':
        volumes.push(...splitWords(ins.args));
        break;
      default:
        throw new Error(`${ins.kind}: the replay does not know it`);
    }
  }
  return { name, root, workdir, env, user, entrypoint, cmd, healthcheck, expose, volumes, runs };
}

/** A context path that `docker build` would see: in the context and not left out by .dockerignore. */
function contextPath(context: string, source: string, ignore: ReturnType<typeof parseDockerignore>): string {
  const rel = posix.normalize(source).replace(/^\.?\//, '').replace(/\/$/, '');
  if (rel.startsWith('..')) throw new Error(`COPY ${source}: outside the build context`);
  if (isIgnored(ignore, rel)) throw new Error(`COPY ${source}: left out of the build context by .dockerignore`);
  return join(context, rel);
}

function commandsOf(form: Form): string[] {
  if (form.exec) return [form.argv.join(' ')];
  return form.shell.split('&&').map((c) => c.trim()).filter((c) => c !== '');
}

/** Performs one RUN command the way it would act on the image's files; says what it did. */
function run(command: string, root: string, workdir: string, o: ReplayOptions): string {
  const words = splitWords(command);
  const cwd = join(root, workdir);
  const [tool, sub] = words;
  if (tool === 'npm' && sub === 'ci') {
    if (!words.includes('--omit=dev')) {
      // The build stage's full install: this machine's own (the same lock file), not a second copy.
      symlinkSync(join(o.context, 'node_modules'), join(cwd, 'node_modules'), 'dir');
      return 'linked the full install of the repository';
    }
    // Production dependencies only, really installed, from the local cache where it can.
    const r = spawnSync('npm', [...words.slice(1), ...o.npmFlags], { cwd, encoding: 'utf8', env: { ...process.env, NODE_ENV: 'production' } });
    if (r.status !== 0) throw new Error(`npm ci --omit=dev failed (${r.status}): ${r.stderr}`);
    return 'npm ci --omit=dev';
  }
  if (tool === 'npm' && sub === 'cache') return 'skipped: it only makes the image smaller (and would empty this machine\'s cache)';
  if (tool === 'npx' && sub === 'tsc') {
    // Emits the same files; type errors are `npm run typecheck`'s job, and checking costs most of tsc's time.
    const tsc = join(o.context, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, ...words.slice(2), '--noCheck'], { cwd, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tsc failed (${r.status}): ${r.stdout}${r.stderr}`);
    return 'tsc --noCheck';
  }
  if (tool === 'mkdir') {
    for (const p of words.slice(1).filter((w) => !w.startsWith('-'))) mkdirSync(inRoot(root, workdir, p), { recursive: true });
    return 'mkdir';
  }
  if (tool === 'chown') {
    const [, spec, ...paths] = words;
    if (o.owner === undefined) return `skipped chown ${spec}: not root here`;
    for (const p of paths) chownSync(inRoot(root, workdir, p), o.owner.uid, o.owner.gid);
    return `chown to ${o.owner.uid}:${o.owner.gid} (standing for ${spec})`;
  }
  throw new Error(`RUN ${command}: the image replay does not know how to run this; teach test/docker/replay.ts`);
}
