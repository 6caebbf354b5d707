/**
 * Generated command lines for the CLI fuzzer (`cliFuzz_test.ts`): every command, its flags with
 * good, bad and absurd values, unknown flags, repeats, `--flag=value` forms, stray positionals,
 * and files that are policies, junk, links to /dev/zero, folders or missing. A seeded generator,
 * so a failing case can be replayed from its index.
 *
 * @module
 */

import { SeededRandom } from "../../src/eval/seededRandom.ts";

/** The project's seeded PRNG (mulberry32) with the two helpers the generator adds. */
export class Rand extends SeededRandom {
  /** An integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Files the cases refer to, made by {@link makeCaseFiles} in the fuzzer's folder. */
export interface CaseFiles {
  /** Policies that check (shipped ones copied in). */
  goodPolicies: string[];
  /** Files that are not valid policies (syntax errors, binary junk, invalid UTF-8, empty). */
  badPolicies: string[];
  /** Prompt files (text, empty, binary). */
  prompts: string[];
  /** Suite YAML files (good and bad). */
  suites: string[];
  /** Paths that are missing, folders, or links to /dev/zero. */
  odd: string[];
  /** A plugin that registers a method (examples/lastQueryPress.ts, absolute). */
  plugin: string;
}

const NUMBERS = [
  "0",
  "1",
  "2",
  "7",
  "64",
  "-1",
  "-0",
  "1.5",
  "1e3",
  "1e308",
  "1e-300",
  "NaN",
  "Infinity",
  "-Infinity",
  "0x10",
  "",
  " 3",
  "9007199254740993",
  "4294967296",
  "1k",
  "2K",
  "16384k",
  "abc",
  "١٢",
];

const LISTS = [
  "1k",
  "512,1k",
  "0.5",
  "0:1:0.25",
  "0:1:0",
  "0:100:0.0000001",
  "1:0:0.5",
  ",",
  "",
  "1e9",
  "-5",
  "0.1,0.5,0.9",
  "a,b",
  "1,,2",
  "1k,1e400",
];

const TEXT = ["hello", "", " ", "Paris?", "ünïcödé 🦙", "\u0000", "x".repeat(5000), "--policy"];

/** One value for flag `flag` of command `cmd`. */
function value(r: Rand, cmd: string, flag: string, f: CaseFiles): string {
  switch (flag) {
    case "policy":
      return r.chance(0.6)
        ? r.pick(f.goodPolicies)
        : r.pick([...f.badPolicies, ...f.odd, "full", "else -> snap(k=64);", "npm:x"]);
    case "model":
      return r.pick([...f.odd, "models/tiny-needle", "missing.gguf"]);
    case "prompt":
    case "chat":
    case "system":
    case "question":
      return r.pick(TEXT);
    case "prompt-file":
      return r.pick([...f.prompts, ...f.odd]);
    case "prompt-ids":
      return r.pick(["1,2,3", "0", "-1", "1e9", "", "a,b", "1,,2", "4294967296", "5 6"]);
    case "to":
      return r.pick(["kvpress", "kvpress", "vllm", "", "KVPRESS"]);
    case "protocol":
      return r.pick(["aware", "agnostic", "both", "", "AWARE", "none"]);
    case "kv-dtype":
      return r.pick(["f32", "f16", "bf16", "", "F32"]);
    case "task":
      return r.pick(["needle", "ruler", "ppl", "niah", "", "needle,ppl", "mystery"]);
    case "lengths":
    case "depths":
      return r.pick(LISTS);
    case "shape":
      return r.pick(["small", "small-mha", "huge", "", "small,tiny"]);
    case "suite":
      return r.pick([...f.suites, ...f.odd]);
    case "out":
      return r.pick(
        cmd === "bench"
          ? ["bench/fuzz.md", "bench/sub/x.md", "elsewhere.md", "bench", "../x.md", ""]
          : cmd === "export"
          ? ["out/fuzz.py", "out/sub/x.py", "out", "elsewhere.py", "../x.py", ""]
          : ["out/fuzz", "out", "elsewhere", "../x", "", "out/a/b"],
      );
    case "plugin":
      return r.pick([
        f.plugin,
        "npm:left-pad",
        "HTTPS://x/y.ts",
        "data:text/javascript,1",
        ...f.odd,
      ]);
    default:
      return r.pick(NUMBERS);
  }
}

/** The flags of each command (`true`: a boolean flag). */
export const COMMAND_FLAGS: Record<string, Record<string, boolean>> = {
  run: {
    policy: false,
    model: false,
    prompt: false,
    "prompt-file": false,
    "prompt-ids": false,
    chat: false,
    system: false,
    question: false,
    "max-new-tokens": false,
    temperature: false,
    "top-k": false,
    "top-p": false,
    seed: false,
    "prefill-chunk": false,
    "kv-dtype": false,
    json: true,
    trace: true,
    "allow-plugins": true,
    plugin: false,
  },
  check: {
    plan: true,
    yaml: true,
    explain: true,
    model: false,
    prompt: false,
    "prompt-file": false,
    "allow-plugins": true,
    plugin: false,
  },
  fmt: { check: true },
  eval: {
    task: false,
    policy: false,
    model: false,
    lengths: false,
    depths: false,
    samples: false,
    seed: false,
    suite: false,
    out: false,
    json: true,
    chat: true,
    protocol: false,
    leaderboard: true,
    methods: false,
    ratios: false,
    resume: true,
  },
  inspect: {
    policy: false,
    model: false,
    prompt: false,
    "prompt-file": false,
    out: false,
    "allow-plugins": true,
    plugin: false,
  },
  bench: {
    quick: true,
    json: true,
    lengths: false,
    shape: false,
    repeats: false,
    "long-repeats": false,
    "decode-tokens": false,
    "prefill-chunk": false,
    out: false,
    model: false,
    policy: false,
    profile: true,
  },
  export: { to: false, model: false, out: false },
};

/** One generated command line: `[command, ...args]`. */
export function generateCase(r: Rand, f: CaseFiles): string[] {
  const cmd = r.pick(Object.keys(COMMAND_FLAGS));
  const flags = COMMAND_FLAGS[cmd];
  const names = Object.keys(flags);
  const args: string[] = [];
  const count = r.between(0, 6);
  for (let i = 0; i < count; i++) {
    const roll = r.next();
    if (roll < 0.04) {
      args.push(r.pick(["--bogus", "-x", "--", "-", "---policy", "--help", "-h", "--=1"]));
      continue;
    }
    if (roll < 0.08) {
      // a stray positional: a policy-looking one, a file, or junk
      args.push(r.pick(["else -> snap(k=64);", ...f.goodPolicies, "junk", "🦙"]));
      continue;
    }
    const name = r.pick(names);
    if (flags[name]) {
      args.push(r.chance(0.9) ? `--${name}` : `--${name}=${r.pick(["true", "false", "1"])}`);
      continue;
    }
    const v = value(r, cmd, name, f);
    if (r.chance(0.2)) args.push(`--${name}=${v}`);
    else if (r.chance(0.03)) args.push(`--${name}`); // missing value
    else args.push(`--${name}`, v);
  }
  if (cmd === "fmt" || cmd === "export") {
    const files = [...f.goodPolicies, ...f.badPolicies, ...f.odd];
    for (let i = r.between(0, 2); i > 0; i--) args.push(r.pick(files));
  }
  return [cmd, ...args];
}
