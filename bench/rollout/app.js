// The rollout bench's HTTP app (bench/rollout/run.py): ready 300 ms after start, answers every
// request with 200 and "pid=P version=V", and on SIGTERM or SIGINT stops accepting, lets the
// requests in flight finish and exits 0. Node 20, no dependencies.
//
// Listens on the activated socket (fd 3) when LISTEN_FDS is set, else on 127.0.0.1:$PORT (under
// PM2's cluster mode, node's cluster module shares that port among the workers). Says it is
// ready once listening: a newline on fd $READY_FD (or $CANDOR_READY_FD) when set, and
// process.send('ready') when it has an IPC channel (PM2's wait_ready).
'use strict';
const fs = require('fs');
const http = require('http');

const STARTUP_MS = Number(process.env.STARTUP_MS || 300);
const version = process.env.VERSION || 'unset';
const body = `pid=${process.pid} version=${version}\n`;

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 1000;

function ready() {
  const fd = process.env.READY_FD || process.env.CANDOR_READY_FD;
  if (fd) {
    try {
      fs.writeSync(Number(fd), '\n');
      fs.closeSync(Number(fd));
    } catch (e) {
      console.error(`could not write the ready line to fd ${fd}: ${e.message}`);
    }
  }
  if (process.send) process.send('ready');
  console.log(`ready: pid ${process.pid} version ${version}`);
}

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: pid ${process.pid} stops accepting, finishes what is in flight`);
  // close() stops accepting now and calls back once every connection has ended; idle
  // keep-alive connections are closed by node 20 right away.
  server.close(() => process.exit(0));
  server.closeIdleConnections();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
// PM2 may ask through its IPC channel instead of a signal (shutdown_with_message).
process.on('message', (m) => { if (m === 'shutdown') stop('shutdown message'); });

// The simulated start-up work: nothing is accepted before it is over.
setTimeout(() => {
  if (stopping) process.exit(0);
  if (process.env.LISTEN_FDS) {
    server.listen({ fd: 3 }, ready);
  } else {
    server.listen({ port: Number(process.env.PORT || 8080), host: process.env.HOST || '127.0.0.1' }, ready);
  }
}, STARTUP_MS);
