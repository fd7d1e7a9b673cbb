/**
 * Child process of checkpoint-memory.test.ts: loads every tensor of a checkpoint as float32
 * and keeps them all (as the model does), then prints its peak RSS as JSON on stdout.
 * With --baseline it opens the checkpoint and loads nothing; with --model it loads the runnable
 * model (loadModel: every weight wrapped for onnxruntime, sessions compiled), as serving does.
 */
import { openCheckpoint } from "./checkpoint.ts";
import { loadModel } from "../runtime/deepseek-model.ts";

const [dir, mode] = process.argv.slice(2);
if (dir === undefined) throw new Error("usage: checkpoint-memory.child.ts DIR [--baseline]");
const t0 = performance.now();
const ckpt = await openCheckpoint(dir);
const kept: Float32Array[] = [];
let float32Bytes = 0;
if (mode === "--model") {
  const model = await loadModel(ckpt, { threads: 1 });
  for (const name of ckpt.tensorNames()) float32Bytes += ckpt.info(name).shape.reduce((a, b) => a * b, 4);
  kept.push(new Float32Array(0));
  await model.release();
} else if (mode !== "--baseline") {
  for (const name of ckpt.tensorNames()) {
    const values = await ckpt.readFloat32(name);
    kept.push(values);
    float32Bytes += values.byteLength;
  }
}
await ckpt.close();
process.stdout.write(
  JSON.stringify({
    tensors: kept.length,
    float32Bytes,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    loadMs: Math.round(performance.now() - t0),
  }),
);
