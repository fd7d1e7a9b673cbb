#!/usr/bin/env node
// Installed entry point: TypeScript sources run through tsx's loader.
import { register } from "tsx/esm/api";
register();
await import("../src/main.ts");
