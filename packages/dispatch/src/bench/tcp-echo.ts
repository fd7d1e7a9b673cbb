/**
 * A raw loopback TCP baseline for the Dispatch stream: a tiny node:net server in a child process
 * that answers each frame `[u32 payload bytes][u32 reply bytes][payload]` with `reply bytes`
 * bytes, and a client timing one frame's round trip. No gRPC, no protobuf, no copies beyond the
 * kernel's: what the wire alone costs for messages of the same sizes.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { Code, ExpertMeshError } from "@expertmesh/shared";

const SERVER = `
const net = require("node:net");
const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let chunks = [], have = 0, need = -1, reply = 0;
  sock.on("data", (c) => {
    chunks.push(c); have += c.length;
    for (;;) {
      if (need < 0) {
        if (have < 8) return;
        const b = Buffer.concat(chunks); chunks = [b];
        need = b.readUInt32LE(0) + 8; reply = b.readUInt32LE(4);
      }
      if (have < need) return;
      const b = Buffer.concat(chunks);
      const rest = b.subarray(need);
      chunks = rest.length > 0 ? [rest] : []; have = rest.length; need = -1;
      sock.write(Buffer.alloc(reply, 7));
    }
  });
  sock.on("error", () => {});
});
server.listen(0, "127.0.0.1", () => process.stdout.write("port " + server.address().port + "\\n"));
process.on("SIGTERM", () => process.exit(0));
`;

export class TcpEcho {
  readonly #child: ChildProcess;
  readonly #socket: Socket;

  private constructor(child: ChildProcess, socket: Socket) {
    this.#child = child;
    this.#socket = socket;
  }

  /** Starts the echo server process and connects to it. */
  static async start(timeoutMs = 10_000): Promise<TcpEcho> {
    const child = spawn(process.execPath, ["-e", SERVER], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let text = "";
        const timer = setTimeout(
          () => reject(new ExpertMeshError(Code.DEADLINE_EXCEEDED, "tcp echo server did not start")),
          timeoutMs,
        );
        child.once("exit", (code) =>
          reject(new ExpertMeshError(Code.UNAVAILABLE, `tcp echo server exited (${code})`)),
        );
        child.stdout?.on("data", (c: Buffer) => {
          text += c.toString();
          const m = /port (\d+)\n/.exec(text);
          if (m !== null) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
      });
      const socket = await new Promise<Socket>((resolve, reject) => {
        const s = connect(port, "127.0.0.1", () => resolve(s));
        s.once("error", reject);
      });
      socket.setNoDelay(true);
      return new TcpEcho(child, socket);
    } catch (err) {
      child.kill("SIGKILL");
      throw err;
    }
  }

  /** Sends `sendBytes` bytes and resolves once `replyBytes` bytes came back (ms). */
  async roundTrip(payload: Uint8Array, replyBytes: number): Promise<number> {
    const header = Buffer.alloc(8);
    header.writeUInt32LE(payload.length, 0);
    header.writeUInt32LE(replyBytes, 4);
    const t0 = performance.now();
    const done = new Promise<void>((resolve, reject) => {
      let got = 0;
      const onData = (c: Buffer): void => {
        got += c.length;
        if (got >= replyBytes) {
          this.#socket.off("data", onData);
          this.#socket.off("error", reject);
          resolve();
        }
      };
      this.#socket.on("data", onData);
      this.#socket.once("error", reject);
    });
    this.#socket.write(header);
    this.#socket.write(payload);
    await done;
    return performance.now() - t0;
  }

  async close(): Promise<void> {
    this.#socket.destroy();
    const exited = new Promise<void>((resolve) => this.#child.once("exit", () => resolve()));
    this.#child.kill("SIGTERM");
    await exited;
  }
}
