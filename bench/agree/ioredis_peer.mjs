// The real ioredis for the agreement harness (bench/src/agree.rs).
//
//   node ioredis_peer.mjs MODULE PORT KEY OPS INTERVAL_MS OFFSET_MS CUTOFF_MS
//
// MODULE is `ioredis` (5.x) or `ioredis6` (6.x, an npm alias), both from
// ./node_modules (`cd bench/agree && npm ci`). The client is
// `new Redis(PORT, "127.0.0.1")`: every option at its default.
//
// Clock protocol (stdin/stdout, one JSON object a line):
//   1. connect; on the first `ready` print {"ready":true,...};
//   2. wait for the line `go` on stdin: that instant is this side's start
//      (the harness takes its own start just before writing `go`, so this
//      clock lags the harness's by the pipe's latency, some tens of µs);
//      print {"go":true} at once (the harness times the round trip: an
//      upper bound of the lag);
//   3. op i is submitted at OFFSET_MS + i × INTERVAL_MS after the start:
//      `RPUSH KEY i`, each awaited on its own;
//   4. at CUTOFF_MS after the start print one line per op,
//      {"op":i,"submit_us":…,"outcome":"ok"|"error"|"none","error":"Name: message","done_us":…}
//      (offsets in µs after the start; "none": no outcome by the cut-off),
//      then {"end":true}, and exit without waiting for anything: an op
//      still queued cannot run after the harness has read the list.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const [mod, port, key, ops, intervalMs, offsetMs, cutoffMs] = process.argv.slice(2);
const require = createRequire(import.meta.url);
const Redis = require(mod);
const version = require(`${mod}/package.json`).version;

const n = Number(ops);
const now = () => process.hrtime.bigint();
const us = (t, t0) => Number((t - t0) / 1000n);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

const redis = new Redis(Number(port), "127.0.0.1");
let errors = 0;
// Without a listener ioredis logs every connection error to stderr; the
// listener changes nothing else.
redis.on("error", () => {
  errors += 1;
});
redis.once("ready", () => out({ ready: true, module: mod, version, node: process.version }));

const rl = createInterface({ input: process.stdin });
rl.once("line", (line) => {
  if (line.trim() !== "go") {
    process.stderr.write(`ioredis_peer: expected "go", got ${JSON.stringify(line)}\n`);
    process.exit(2);
  }
  const t0 = now();
  out({ go: true });
  run(t0);
});

function run(t0) {
  const results = Array.from({ length: n }, () => null);
  const at = (ms) => t0 + BigInt(Math.round(ms * 1e6));
  const sleepUntil = (t) =>
    new Promise((resolve) => {
      const wait = Number(t - now()) / 1e6;
      if (wait <= 0) resolve();
      else setTimeout(resolve, Math.ceil(wait));
    });
  (async () => {
    for (let i = 0; i < n; i++) {
      await sleepUntil(at(Number(offsetMs) + i * Number(intervalMs)));
      const submitted = now();
      const r = { op: i, submit_us: us(submitted, t0), outcome: "none" };
      results[i] = r;
      redis.rpush(key, String(i)).then(
        () => {
          r.outcome = "ok";
          r.done_us = us(now(), t0);
        },
        (e) => {
          r.outcome = "error";
          r.error = `${e && e.name}: ${e && e.message}`;
          r.done_us = us(now(), t0);
        },
      );
    }
  })();
  setTimeout(() => {
    for (let i = 0; i < n; i++) out(results[i] ?? { op: i, outcome: "none" });
    out({ end: true, errors });
    redis.disconnect();
    // Exit once stdout is flushed (a pipe: writes are synchronous on
    // Linux, but be sure).
    process.stdout.write("", () => process.exit(0));
  }, Math.max(0, Number(at(Number(cutoffMs)) - now()) / 1e6));
}
