// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import importX, { createNodeResolver } from "eslint-plugin-import-x";

export default tseslint.config(
  { ignores: ["**/node_modules/**", "**/dist/**", "**/src/gen/**", "**/*.js", "**/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    plugins: { "import-x": importX },
    rules: {
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            {
              from: "package",
              package: "node:test",
              name: ["describe", "it", "test", "suite", "before", "after", "beforeEach", "afterEach"],
            },
          ],
        },
      ],
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "import-x/no-cycle": "error",
      // Packages talk through their public entry points only; services never import each other.
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["@expertmesh/*/src/*", "@expertmesh/*/src"],
              message: "Import the package entry point, not its internals.",
            },
            {
              group: ["../../packages/*", "../../services/*", "../../../packages/*", "../../../services/*"],
              message: "Import workspace packages by name.",
            },
            {
              group: ["@expertmesh/router", "@expertmesh/attention", "@expertmesh/expert-worker"],
              message: "Services never import each other.",
            },
          ],
        },
      ],
    },
    settings: { "import-x/resolver-next": [createNodeResolver()] },
  },
);
