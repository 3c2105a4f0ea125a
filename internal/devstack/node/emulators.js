#!/usr/bin/env node
// emulators.js runs kinesalite, dynalite and s3rver in ONE node process, bound to
// 127.0.0.1 only, and prints their endpoints as one JSON line on stdout:
//
//   {"kinesis":"http://127.0.0.1:P1","dynamodb":"http://127.0.0.1:P2","s3":"http://127.0.0.1:P3"}
//
// It uses the library APIs rather than the CLIs because the kinesalite CLI binds every
// interface and neither the kinesalite nor the dynalite CLI accepts port 0.
//
// Environment:
//   KINESIS_PORT, DYNAMODB_PORT, S3_PORT  listen ports; 0 or unset picks a free port
//   DATA_DIR     when set, kinesalite and dynalite persist in LevelDB under it and s3rver
//                stores objects under it, so a restart keeps streams, tables and buckets;
//                when unset, kinesalite/dynalite are in memory and S3 uses a temp dir
//                that is removed on exit
//   WATCH_STDIN  "0" disables exit-on-stdin-EOF (for manual runs with stdin=/dev/null)
//   NODE_OPTIONS must contain --openssl-legacy-provider: s3rver encrypts
//                ListObjectsV2 continuation tokens with DES, which OpenSSL 3 disables,
//                so paged listings fail with HTTP 500 without it
//
// It stops cleanly on SIGTERM or SIGINT, and also when stdin reaches EOF: the Go parent
// holds the write end of a pipe, so if the parent is SIGKILLed the kernel closes that
// pipe and the emulators do not outlive it.
'use strict'

const crypto = require('crypto')
const fs = require('fs')
const os = require('os')
const path = require('path')

const HOST = '127.0.0.1'
// Generous enough for a test that splits shards many times; kinesalite's default is 10.
const SHARD_LIMIT = 200
// How long a graceful close may take before we exit anyway.
const CLOSE_TIMEOUT_MS = 5000

let tempDir = null
process.on('exit', () => {
  // Synchronous on purpose: 'exit' handlers cannot wait for async work.
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true })
})

function fatal (msg, err) {
  process.stderr.write(`emulators: ${msg}${err ? ': ' + (err.stack || err) : ''}\n`)
  process.exit(1)
}

process.on('uncaughtException', (err) => fatal('uncaught exception', err))
process.on('unhandledRejection', (err) => fatal('unhandled rejection', err))

function port (name) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return 0
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0 || n > 65535) fatal(`invalid ${name}=${JSON.stringify(raw)}`)
  return n
}

// checkLegacyProvider fails fast instead of letting s3rver answer paged listings with 500.
function checkLegacyProvider () {
  try {
    crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8))
  } catch (err) {
    fatal('DES is unavailable; start node with NODE_OPTIONS=--openssl-legacy-provider (s3rver needs it for ListObjectsV2 paging)', err)
  }
}

function listen (server, p) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(p, HOST, () => {
      server.removeListener('error', reject)
      resolve(server.address().port)
    })
  })
}

function closeServer (server) {
  return new Promise((resolve) => {
    server.close((err) => {
      if (err) process.stderr.write(`emulators: close: ${err}\n`)
      resolve()
    })
    // Idle keep-alive connections from SDK clients would otherwise hold close() open.
    if (typeof server.closeAllConnections === 'function') server.closeAllConnections()
  })
}

async function main () {
  checkLegacyProvider()

  const dataDir = process.env.DATA_DIR ? path.resolve(process.env.DATA_DIR) : ''
  let kinesisPath, dynamoPath, s3Dir
  if (dataDir) {
    kinesisPath = path.join(dataDir, 'kinesis')
    dynamoPath = path.join(dataDir, 'dynamodb')
    s3Dir = path.join(dataDir, 's3')
    for (const d of [kinesisPath, dynamoPath, s3Dir]) fs.mkdirSync(d, { recursive: true })
  } else {
    tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'devstack-s3-'))
    s3Dir = tempDir
  }

  // Required here, not at the top, so that a missing node_modules is reported by fatal().
  const kinesalite = require('kinesalite')
  const dynalite = require('dynalite')
  const S3rver = require('s3rver')

  // State transitions take 0 ms so tests need not wait for CREATING -> ACTIVE.
  const kin = kinesalite({
    path: kinesisPath,
    createStreamMs: 0,
    deleteStreamMs: 0,
    updateStreamMs: 0,
    shardLimit: SHARD_LIMIT
  })
  const ddb = dynalite({
    path: dynamoPath,
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0
  })
  const s3 = new S3rver({
    address: HOST,
    port: port('S3_PORT'),
    directory: s3Dir,
    silent: true, // its logger writes to stdout, which carries our JSON line
    resetOnClose: false
  })

  const kinPort = await listen(kin, port('KINESIS_PORT'))
  const ddbPort = await listen(ddb, port('DYNAMODB_PORT'))
  const s3Addr = await s3.run()

  let stopping = false
  async function shutdown (reason) {
    if (stopping) return
    stopping = true
    process.stderr.write(`emulators: stopping (${reason})\n`)
    setTimeout(() => fatal(`close took longer than ${CLOSE_TIMEOUT_MS} ms`), CLOSE_TIMEOUT_MS).unref()
    await Promise.all([closeServer(kin), closeServer(ddb), closeServer(s3.httpServer)])
    process.exit(0)
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
  if (process.env.WATCH_STDIN !== '0') {
    process.stdin.on('end', () => shutdown('stdin closed'))
    process.stdin.on('error', () => shutdown('stdin error'))
    process.stdin.on('data', () => {}) // contents are ignored; only EOF matters
    process.stdin.resume()
  }

  process.stdout.write(JSON.stringify({
    kinesis: `http://${HOST}:${kinPort}`,
    dynamodb: `http://${HOST}:${ddbPort}`,
    s3: `http://${HOST}:${s3Addr.port}`
  }) + '\n')
}

main().catch((err) => fatal('start', err))
