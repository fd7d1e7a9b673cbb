/**
 * `expertmesh make-model`: writes a synthetic DeepSeek-V3-architecture checkpoint
 * (Hugging Face layout, BF16 or FP8 block-scaled, optionally sharded, with a tokenizer).
 */
import { PRESET_NAMES, writeSyntheticCheckpoint } from "@expertmesh/model";
import type { PresetName } from "@expertmesh/model";
import { intFlag, parseCommandArgs, withUsage } from "../command-args.ts";

const USAGE = `usage: expertmesh make-model --preset <${PRESET_NAMES.join("|")}> --out DIR [--seed N] [--fp8] [--shards N]

Writes a randomly initialised DeepSeek-V3-architecture checkpoint: config.json,
generation_config.json, safetensors weights and a byte-level BPE tokenizer.

options:
  --preset NAME   tiny (the tiny-v3 fixture's shape), small, bench (shared/bench/perf-v3.config.json)
  --out DIR       output directory (created; earlier weights in it are replaced)
  --seed N        PRNG seed, a non-negative integer (default 0)
  --fp8           store Linear weights as e4m3fn with 128x128 block scales, like the V3 release
  --shards N      number of safetensors files; N > 1 adds model.safetensors.index.json (default 1)
  -h, --help      show this help`;

const usageError = withUsage(USAGE);

function parseNonNegativeInt(flag: string, text: string | undefined, fallback: number): number {
  return intFlag(flag, text, fallback, 0, usageError);
}

export async function run(args: string[]): Promise<void> {
  const values = parseCommandArgs(
    args,
    {
      preset: { type: "string" },
      out: { type: "string" },
      seed: { type: "string" },
      fp8: { type: "boolean" },
      shards: { type: "string" },
    },
    USAGE,
    usageError,
  );
  if (values === null) return;
  if (values.preset === undefined) throw usageError("--preset is required");
  if (!(PRESET_NAMES as readonly string[]).includes(values.preset)) {
    throw usageError(`unknown --preset '${values.preset}' (expected ${PRESET_NAMES.join(", ")})`);
  }
  if (values.out === undefined || values.out === "") throw usageError("--out is required");
  const seed = parseNonNegativeInt("seed", values.seed, 0);
  const shards = parseNonNegativeInt("shards", values.shards, 1);
  if (shards < 1) throw usageError("--shards must be at least 1");

  const progress = createProgress(process.stderr);
  const result = await writeSyntheticCheckpoint({
    preset: values.preset as PresetName,
    seed,
    outDir: values.out,
    fp8: values.fp8 ?? false,
    shards,
    onProgress: progress.update,
  });
  progress.done();
  const mb = (result.totalBytes / 1e6).toFixed(1);
  console.log(
    `wrote ${values.preset} (${values.fp8 === true ? "fp8" : "bf16"}, ${result.tensorCount} tensors, ${mb} MB in ${result.files.length} file(s)) to ${result.outDir}`,
  );
}

/** A bar redrawn in place on a TTY; otherwise a line per 10 % (logs stay readable). */
function createProgress(stream: NodeJS.WriteStream): {
  update: (written: number, total: number) => void;
  done: () => void;
} {
  const tty = stream.isTTY;
  let lastShown = -1;
  return {
    update(written, total) {
      const pct = total === 0 ? 100 : Math.floor((written / total) * 100);
      if (tty) {
        if (pct === lastShown) return;
        const width = 30;
        const filled = Math.round((pct / 100) * width);
        stream.write(
          `\r[${"#".repeat(filled)}${" ".repeat(width - filled)}] ${String(pct).padStart(3)}% ${(written / 1e6).toFixed(0)}/${(total / 1e6).toFixed(0)} MB`,
        );
      } else {
        if (Math.floor(pct / 10) === Math.floor(lastShown / 10)) return;
        stream.write(`make-model: ${pct}%\n`);
      }
      lastShown = pct;
    },
    done() {
      if (tty && lastShown >= 0) stream.write("\n");
    },
  };
}
