"""The entry points: `canary` (serve and the ops verbs), `canary plan`, `canary alerts`, and the process `serve` runs."""
