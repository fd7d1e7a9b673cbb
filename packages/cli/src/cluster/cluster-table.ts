/** The table `expertmesh up` prints: where every member listens. */
import type { ClusterMember } from "./local-cluster.ts";

export function formatClusterTable(members: readonly ClusterMember[]): string {
  const rows = [
    ["NAME", "ROLE", "NODE", "ADDRESS", "METRICS", "PID"],
    ...members.map((m) => [
      m.name,
      m.role,
      m.node ?? "-",
      m.role === "redis" ? `redis://${m.address}` : m.address,
      m.metricsPort === undefined
        ? "-"
        : `http://${m.address.slice(0, m.address.lastIndexOf(":"))}:${m.metricsPort}/metrics`,
      String(m.process.pid),
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join("  "))
    .join("\n");
}
