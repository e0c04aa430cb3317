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

// Every request from a timer set here: one path through the event loop,
// and one call stack to fetchStatus.
function schedule(left) {
  setTimeout(() => run(left), 20);
}

function run(left) {
  if (left === 0) {
    console.log('done');
    return;
  }
  fetchStatus(() => schedule(left - 1));
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'go') schedule(requests);
});
lines.on('close', () => process.exit(0));
console.log(`ready ${process.pid}`);
