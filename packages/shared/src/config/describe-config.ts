/** Renders a config registry as a markdown table for docs (one row per option). */
import type { ConfigRegistry } from "./load-config.ts";

const cell = (text: string): string => text.replaceAll("|", "\\|").replaceAll("\n", " ");

export function describeConfig(registry: ConfigRegistry): string {
  const rows = Object.entries(registry).map(([name, o]) => {
    let def: string;
    if (o.required) def = "*required*";
    else if (o.optional) def = "*unset*";
    else if (o.secret) def = "*secret*";
    else if (o.defaultText === "") def = "*empty*";
    else def = `\`${o.defaultText ?? ""}\``;
    return `| \`${name}\` | \`${o.env}\` | ${cell(o.type)} | ${cell(def)} | ${cell(o.doc)} |`;
  });
  return (
    ["| Option | Env var | Type | Default | Description |", "| --- | --- | --- | --- | --- |", ...rows].join(
      "\n",
    ) + "\n"
  );
}
