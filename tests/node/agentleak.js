// A Node client that leaks: every request makes an http.Agent with
// keepAlive and never destroys it, so each request's socket stays open.
// Protocol of the tests' workloads: prints "ready PID", waits for "go",
// makes REQUESTS requests one after another, prints "done" and waits for
// stdin to close.
//
// Usage: node --perf-basic-prof agentleak.js HOST:PORT REQUESTS
'use strict';
const http = require('http');
const readline = require('readline');

const [host, port] = process.argv[2].split(':');
const requests = Number(process.argv[3]);

function fetchStatus(done) {
  const agent = new http.Agent({ keepAlive: true });
  http.get({ host, port, path: '/', agent }, (res) => {
    res.resume();
    res.on('end', done);
  });
}

function run(left) {
  if (left === 0) {
    console.log('done');
    return;
  }
  fetchStatus(() => setTimeout(() => run(left - 1), 20));
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  // From a timer, as every later request: one path through the event loop.
  if (line === 'go') setTimeout(() => run(requests), 0);
});
lines.on('close', () => process.exit(0));
console.log(`ready ${process.pid}`);
