#!/usr/bin/env node
// A TypeScript SDK client (legacy era: the SDK 1.x speaks only
// initialize-based revisions) against the conformance fixture, through
// mcpgate. Used to show a legacy client working with a 2026-07-28-only
// server behind the gateway.
//
// Usage: node fixture.mjs URL
//
// Prints one JSON line: {"ok": bool, "protocolVersion": ..., "steps": [{"name", "ok", "detail"}]}
// and exits 0 when every step passed. The SDK is resolved like client.mjs
// does (MCPGATE_NODE_ROOT, or tools/node of this repository).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeRoot = process.env.MCPGATE_NODE_ROOT || path.resolve(here, '..', '..', '..', 'tools', 'node');
const requireFromRoot = createRequire(path.join(nodeRoot, 'package.json'));
const sdk = {
    ...requireFromRoot('@modelcontextprotocol/sdk/client/index.js'),
    ...requireFromRoot('@modelcontextprotocol/sdk/client/streamableHttp.js'),
    ...requireFromRoot('@modelcontextprotocol/sdk/types.js')
};
const { Client, StreamableHTTPClientTransport, CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } = sdk;

const url = process.argv[2];
const report = { ok: false, protocolVersion: '', steps: [] };
const progress = [];

async function step(name, fn) {
    try {
        const detail = await fn();
        report.steps.push({ name, ok: true, detail: String(detail ?? '') });
    } catch (err) {
        report.steps.push({ name, ok: false, detail: String(err && err.message || err) });
    }
}

function text(result) {
    return (result.content || []).filter(c => c.type === 'text').map(c => c.text).join('');
}

function expect(cond, what) {
    if (!cond) throw new Error(what);
}

const client = new Client({ name: 'ts-fixture-client', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } });
client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    role: 'assistant', model: 'ts-model', stopReason: 'endTurn', content: { type: 'text', text: 'forty-two' }
}));
client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { username: 'gopher', name: 'Ada', color: 'green', context: 'tests', ok: true } }));
client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///workspace', name: 'workspace' }] }));

const watchdog = setTimeout(() => { finish(); }, 60000);

try {
    const transport = new StreamableHTTPClientTransport(new URL(url));
    await client.connect(transport);
    report.protocolVersion = transport.protocolVersion || '';
    await step('tools/list', async () => {
        const r = await client.listTools();
        expect(r.tools.length >= 10, `only ${r.tools.length} tools`);
        return r.tools.length;
    });
    await step('tools/call', async () => {
        const r = await client.callTool({ name: 'test_simple_text' });
        expect(text(r) === 'This is a simple text response for testing.', text(r));
    });
    await step('progress', async () => {
        await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
            onprogress: p => progress.push(p.progress)
        });
        expect(progress.length === 3, `progress ${JSON.stringify(progress)}`);
    });
    await step('sampling', async () => {
        const r = await client.callTool({ name: 'test_sampling', arguments: { prompt: 'the answer?' } });
        expect(text(r).includes('forty-two'), text(r));
    });
    await step('elicitation', async () => {
        const r = await client.callTool({ name: 'test_elicitation', arguments: { message: 'name?' } });
        expect(text(r).includes('gopher'), text(r));
    });
    await step('roots', async () => {
        const r = await client.callTool({ name: 'test_input_required_result_list_roots' });
        expect(text(r).includes('file:///workspace'), text(r));
    });
    await step('multi-round', async () => {
        const r = await client.callTool({ name: 'test_input_required_result_multi_round' });
        expect(!r.isError, text(r));
        return text(r);
    });
    await step('resources/read', async () => {
        const r = await client.readResource({ uri: 'test://static-text' });
        expect(r.contents.length === 1 && r.contents[0].text, JSON.stringify(r));
    });
    await step('prompts/get', async () => {
        const r = await client.getPrompt({ name: 'test_simple_prompt' });
        expect(r.messages.length > 0, JSON.stringify(r));
    });
    await step('ping', async () => { await client.ping(); });
    await step('logging/setLevel', async () => { await client.setLoggingLevel('info'); });
    await client.close();
} catch (err) {
    report.steps.push({ name: 'connect', ok: false, detail: String(err && err.message || err) });
}
finish();

function finish() {
    clearTimeout(watchdog);
    report.ok = report.steps.length > 0 && report.steps.every(s => s.ok);
    process.stdout.write(JSON.stringify(report) + '\n');
    process.exit(report.ok ? 0 : 1);
}
