import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ServerCredentials } from "@grpc/grpc-js";
import { Code, ExpertMeshError, createExpertMeshClient } from "@expertmesh/client";
import type { ExpertMeshClient, ExpertMeshClientOptions } from "@expertmesh/client";
import { startEchoRouter } from "./echo-router.ts";
import type { EchoRouter } from "./echo-router.ts";

/** The name in the test certificate; the router is reached at 127.0.0.1, so clients must say it. */
const SERVER_NAME = "router.expertmesh.test";

function opensslVersion(): string | undefined {
  try {
    return execFileSync("openssl", ["version"], { encoding: "utf8" });
  } catch {
    return undefined;
  }
}

/** A fresh self-signed certificate (P-256) for SERVER_NAME, valid for one day. */
function selfSignedCertificate(): { cert: string; key: string } {
  const dir = mkdtempSync(join(tmpdir(), "expertmesh-tls-"));
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
        "-days",
        "1",
        "-subj",
        `/CN=${SERVER_NAME}`,
        "-addext",
        `subjectAltName=DNS:${SERVER_NAME}`,
      ],
      { stdio: "pipe" },
    );
    return {
      cert: readFileSync(join(dir, "cert.pem"), "utf8"),
      key: readFileSync(join(dir, "key.pem"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function code(promise: Promise<unknown>): Promise<Code | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    assert.ok(error instanceof ExpertMeshError);
    return error.code;
  }
}

const skip = opensslVersion() === undefined ? "openssl is not installed: no certificate can be made" : false;

describe("TLS", { skip }, () => {
  let pair: { cert: string; key: string };
  let tlsRouter: EchoRouter;
  let mtlsRouter: EchoRouter;
  const clients: ExpertMeshClient[] = [];
  const connect = (router: EchoRouter, options: Partial<ExpertMeshClientOptions>): ExpertMeshClient => {
    const client = createExpertMeshClient({ address: router.address, retry: false, ...options });
    clients.push(client);
    return client;
  };

  before(async () => {
    pair = selfSignedCertificate();
    const keyCert = [{ private_key: Buffer.from(pair.key), cert_chain: Buffer.from(pair.cert) }];
    tlsRouter = await startEchoRouter({ credentials: ServerCredentials.createSsl(null, keyCert, false) });
    // Mutual TLS: the router only talks to clients with a certificate its CA (the same self-signed one) signed.
    mtlsRouter = await startEchoRouter({
      credentials: ServerCredentials.createSsl(Buffer.from(pair.cert), keyCert, true),
    });
  });
  after(async () => {
    for (const client of clients) client.close();
    await tlsRouter.stop();
    await mtlsRouter.stop();
  });

  it("generates over TLS with the router's CA and name", async () => {
    const client = connect(tlsRouter, { tls: { ca: pair.cert, serverName: SERVER_NAME }, apiKey: "sk-tls" });
    const completion = await client.complete({ prompt: "secure" });
    assert.equal(completion.text, "secure");
    assert.equal(tlsRouter.calls.at(-1)?.metadata.authorization, "Bearer sk-tls");
  });

  it("refuses a certificate whose name does not match the address", async () => {
    assert.equal(
      await code(connect(tlsRouter, { tls: { ca: pair.cert } }).complete({ prompt: "x" })),
      Code.UNAVAILABLE,
    );
  });

  it("refuses a certificate the system roots do not trust (tls: true)", async () => {
    const client = connect(tlsRouter, {
      tls: true,
      channelOptions: { "grpc.ssl_target_name_override": SERVER_NAME },
    });
    assert.equal(await code(client.complete({ prompt: "x" })), Code.UNAVAILABLE);
  });

  it("a plaintext client cannot talk to a TLS router", async () => {
    assert.equal(await code(connect(tlsRouter, {}).complete({ prompt: "x" })), Code.UNAVAILABLE);
  });

  it("mutual TLS: a client certificate is required and accepted", async () => {
    const withCert = connect(mtlsRouter, {
      tls: { ca: pair.cert, cert: pair.cert, key: pair.key, serverName: SERVER_NAME },
    });
    assert.equal((await withCert.complete({ prompt: "mtls" })).text, "mtls");
    const withoutCert = connect(mtlsRouter, { tls: { ca: pair.cert, serverName: SERVER_NAME } });
    assert.equal(await code(withoutCert.complete({ prompt: "x" })), Code.UNAVAILABLE);
  });

  it("cert without key is rejected at construction", () => {
    assert.throws(
      () => createExpertMeshClient({ address: "127.0.0.1:1", tls: { cert: "x" } }),
      (e: unknown) => e instanceof ExpertMeshError && e.code === Code.INVALID_ARGUMENT,
    );
  });
});
