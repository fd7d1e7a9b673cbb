/**
 * AttentionService handlers. Serve: one session per router stream; commands are read as they
 * come (adds and aborts land at the next step boundary) while step reports are pushed into the
 * response queue by the serve loop. The stream ends with OK after the router half-closes and its
 * last sequence finishes; a cancelled stream aborts its sequences (their KV blocks are freed).
 * GetLoad: the scheduler's load.
 */
import type { AttentionService, ServeRequest } from "@expertmesh/proto";
import { AsyncQueue, ExpertMeshError } from "@expertmesh/shared";
import type { Logger, ServiceImpl } from "@expertmesh/shared";
import type { ServeLoop } from "../core/serve-loop.ts";
import type { ServeSession } from "../core/serve-session.ts";
import { decodeAddSequence, encodeSessionOutput } from "./serve-codec.ts";
import type { ServeResponseInit } from "./serve-codec.ts";

export interface AttentionServiceDeps {
  readonly loop: ServeLoop;
  readonly logger: Logger;
  /** max_tokens of a sequence that leaves it 0. */
  readonly defaultMaxTokens: number;
}

export function attentionServiceImpl(deps: AttentionServiceDeps): ServiceImpl<typeof AttentionService> {
  const { loop, logger, defaultMaxTokens } = deps;
  return {
    serve(requests, context) {
      // The session is opened right after the queue; the queue's consumer cannot stop before.
      const sessionRef: { current?: ServeSession } = {};
      const queue = new AsyncQueue<ServeResponseInit>({ onReturn: () => sessionRef.current?.cancel() });
      const opened = loop.openSession({
        output: (output) => queue.push(encodeSessionOutput(output)),
        end: () => queue.close(),
        fail: (error) => queue.fail(error),
      });
      sessionRef.current = opened;
      const log = logger.child({ stream: opened.id, peer: context.peer });
      log.debug("serve stream opened");
      void readCommands(requests, opened, defaultMaxTokens).then(
        () => log.debug({ live: opened.numLive }, "router half-closed the stream"),
        (err: unknown) => {
          // A cancelled or broken stream: nobody is left to tell; free what it held.
          log.debug({ err }, "serve stream ended by the router");
          opened.cancel();
          queue.fail(ExpertMeshError.from(err));
        },
      );
      return queue;
    },
    getLoad() {
      return loop.load();
    },
  };
}

async function readCommands(
  requests: AsyncIterable<ServeRequest>,
  session: ServeSession,
  defaultMaxTokens: number,
): Promise<void> {
  for await (const request of requests) {
    const command = request.command;
    switch (command.case) {
      case "addSequence": {
        const add = command.value;
        let decoded;
        try {
          decoded = decodeAddSequence(add, defaultMaxTokens);
        } catch (err) {
          session.reject(add.sequenceId, add.promptTokenIds.length, err);
          break;
        }
        session.add(decoded);
        break;
      }
      case "abortSequences":
        session.abort(command.value.sequenceIds);
        break;
      default:
        // An empty command (a newer router's unknown oneof case): nothing to do.
        break;
    }
  }
  session.endCommands();
}
