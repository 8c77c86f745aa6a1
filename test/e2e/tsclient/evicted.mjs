#!/usr/bin/env node
// Eviction as a real TypeScript MCP client sees it (@modelcontextprotocol/sdk,
// Client + StreamableHTTPClientTransport), driven step by step from Go.
//
// Usage: node evicted.mjs URL TOOL
//
//  1. connects, calls TOOL (no arguments) and prints one JSON line:
//     {"step":"ready","sessionId":...,"protocolVersion":...,"text":...}
//  2. waits for one line on stdin (meanwhile the driver evicts this session);
//  3. calls TOOL again, expecting it to fail with HTTP status 404;
//  4. connects a NEW transport and client, calls TOOL, and prints the report:
//     {"step":"done","ok":...,"firstSessionId":...,"evictedStatus":...,
//      "evictedError":...,"secondSessionId":...,"text":...,"failures":[...]}
//     then exits 0 when every expectation held, 1 otherwise.
//
// Diagnostics go to stderr. The SDK is resolved from tools/node/node_modules
// of this repository (or $MCPGATE_NODE_ROOT/node_modules), like client.mjs.

import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeRoot = process.env.MCPGATE_NODE_ROOT || path.resolve(here, '..', '..', '..', 'tools', 'node');
const requireFromRoot = createRequire(path.join(nodeRoot, 'package.json'));

let Client, StreamableHTTPClientTransport;
try {
    ({ Client } = requireFromRoot('@modelcontextprotocol/sdk/client/index.js'));
    ({ StreamableHTTPClientTransport } = requireFromRoot('@modelcontextprotocol/sdk/client/streamableHttp.js'));
} catch (err) {
    process.stderr.write(`evicted.mjs: cannot load @modelcontextprotocol/sdk from ${nodeRoot}: ${err && err.message}\n`);
    process.exit(3);
}

const [url, tool] = process.argv.slice(2);
if (!url || !tool) {
    process.stderr.write('usage: node evicted.mjs URL TOOL\n');
    process.exit(2);
}

const REQUEST_TIMEOUT_MS = 10000;
// Whole-run watchdog: the driver answers within seconds.
const watchdog = setTimeout(() => {
    process.stderr.write('evicted.mjs: watchdog expired\n');
    process.exit(4);
}, 60000);

function errText(err) {
    if (err instanceof Error) return `${err.name}: ${err.message}${err.code !== undefined ? ` (code ${err.code})` : ''}`;
    return String(err);
}

function text(result) {
    return (result?.content || [])
        .filter(c => c.type === 'text')
        .map(c => c.text)
        .join('\n');
}

function print(obj) {
    return new Promise(resolve => process.stdout.write(JSON.stringify(obj) + '\n', resolve));
}

const lines = readline.createInterface({ input: process.stdin });
const lineIter = lines[Symbol.asyncIterator]();

async function connect() {
    const client = new Client({ name: 'mcpgate-e2e-evicted', version: '1.0.0' }, { capabilities: {} });
    // Transport errors (e.g. the GET stream failing to reconnect to an
    // evicted session) are expected here; log them only.
    client.onerror = err => process.stderr.write(`evicted.mjs: transport error: ${errText(err)}\n`);
    const transport = new StreamableHTTPClientTransport(new URL(url));
    await client.connect(transport, { timeout: REQUEST_TIMEOUT_MS });
    return { client, transport };
}

async function main() {
    const failures = [];
    const first = await connect();
    const firstSessionId = first.transport.sessionId;
    const firstResult = await first.client.callTool({ name: tool, arguments: {} }, undefined, { timeout: REQUEST_TIMEOUT_MS });
    await print({
        step: 'ready',
        sessionId: firstSessionId,
        protocolVersion: first.transport.protocolVersion,
        text: text(firstResult)
    });

    const go = await lineIter.next();
    if (go.done) throw new Error('stdin closed before the go-ahead line');

    let evictedStatus = 0;
    let evictedError = '';
    try {
        const res = await first.client.callTool({ name: tool, arguments: {} }, undefined, { timeout: REQUEST_TIMEOUT_MS });
        failures.push(`the call on the evicted session succeeded: ${JSON.stringify(res)}`);
    } catch (err) {
        evictedError = errText(err);
        evictedStatus = typeof err?.code === 'number' ? err.code : 0;
        if (evictedStatus !== 404) failures.push(`the call on the evicted session failed with ${evictedError}, want HTTP 404`);
    }
    // Close the old client; its DELETE (if any) answers 404, which is fine.
    await first.client.close().catch(() => {});

    const second = await connect();
    const secondSessionId = second.transport.sessionId;
    let secondText = '';
    try {
        const res = await second.client.callTool({ name: tool, arguments: {} }, undefined, { timeout: REQUEST_TIMEOUT_MS });
        secondText = text(res);
        if (res.isError) failures.push(`the call on the new session returned isError: ${secondText}`);
    } catch (err) {
        failures.push(`the call on the new session failed: ${errText(err)}`);
    }
    if (!secondSessionId || secondSessionId === firstSessionId) {
        failures.push(`the new session id ${JSON.stringify(secondSessionId)} is not new (first ${JSON.stringify(firstSessionId)})`);
    }
    await print({
        step: 'done',
        ok: failures.length === 0,
        firstSessionId,
        evictedStatus,
        evictedError,
        secondSessionId,
        text: secondText,
        failures
    });
    // Leave the second session open: the driver checks it is live and ends
    // it itself. Terminate only the transport's connections.
    await second.transport.close().catch(() => {});
    return failures.length === 0 ? 0 : 1;
}

main()
    .then(code => {
        clearTimeout(watchdog);
        lines.close();
        process.exit(code);
    })
    .catch(async err => {
        process.stderr.write(`evicted.mjs: ${errText(err)}\n`);
        await print({ step: 'error', ok: false, error: errText(err) });
        process.exit(1);
    });
