// Builds the web chat into the Python package (bridge/webchat/static/), reproducibly: the same
// sources and lockfile give the same bytes. manifest.json records the sha256 of every source
// read and every file written; `make test` rebuilds and compares (tests/unit/test_webchat_bundle.py).
//
//   node build.mjs <output directory>
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join, relative, resolve } from "node:path";

const out = process.argv[2] && resolve(process.argv[2]);
if (!out) throw new Error("usage: node build.mjs <output directory>");
const here = import.meta.dirname;

async function filesUnder(dir) {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

const sha256 = async (path) => createHash("sha256").update(await readFile(path)).digest("hex");

async function digests(paths, base) {
  const named = await Promise.all(
    paths.map(async (path) => [relative(base, path), await sha256(path)]),
  );
  return Object.fromEntries(named.sort(([a], [b]) => (a < b ? -1 : 1)));
}

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  target: "es2022",
  logLevel: "warning",
  absWorkingDir: here,
  outdir: out,
};
// The chat: code-split so the SDK's end-to-end encryption chunk (never loaded: our rooms are
// not encrypted) stays out of what the page downloads.
await esbuild.build({
  ...common,
  entryPoints: { chat: "src/main.js", "chat-style": "src/chat.css" },
  format: "esm",
  splitting: true,
  entryNames: "[name]",
  chunkNames: "[name]-[hash]",
  define: { "process.env.NODE_ENV": '"production"' },
});
// The host page's helper: one small classic script, no dependencies.
await esbuild.build({
  ...common,
  entryPoints: { embed: "src/embed.js" },
  format: "iife",
  entryNames: "[name]",
});
await copyFile(join(here, "index.html"), join(out, "index.html"));

const sources = [
  ...(await filesUnder(join(here, "src"))),
  ...["index.html", "package.json", "package-lock.json", "build.mjs"].map((f) => join(here, f)),
];
const manifest = {
  esbuild: esbuild.version,
  sources: await digests(sources, here),
  outputs: await digests(await filesUnder(out), out),
};
await writeFile(join(out, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
