// Node's `vm` (how Nango's runner executes scripts): a fresh context per execution, running a
// small async script that maps 100 objects and hands them to `nango.batchSave`.
// Prints JSON: {per_execution_us, per_context_kib, iterations, node}.
import vm from 'node:vm';

const iterations = Number(process.argv[2] || 2000);
const held = Number(process.argv[3] || 500);
const items = Array.from({ length: 100 }, (_, i) => ({ id: `item-${i}`, title: `Item ${i}`, n: i, tags: ['a', 'b'] }));
const source = `(async () => {
    await nango.batchSave(input.items.map((i) => ({ ...i, seen: true })), 'Item');
})()`;
const script = new vm.Script(source);

let saved = 0;
async function once() {
    const context = vm.createContext({
        nango: { batchSave: async (records) => { saved += records.length; return true; } },
        input: { items },
    });
    await script.runInContext(context);
    return context;
}

// Memory first, in a heap that has not yet churned through the timed runs' contexts: measured
// after them, V8 could hand the garbage of thousands of contexts back to the system between the
// two readings, and the difference came out negative (-139 KiB in one make bench run).
const settle = async () => {
    global.gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
    global.gc();
};
for (let i = 0; i < 20; i++) await once();
await settle();
const before = process.memoryUsage().rss;
const keep = [];
for (let i = 0; i < held; i++) keep.push(await once());
await settle();
const after = process.memoryUsage().rss;
const kept = keep.length;
keep.length = 0;
await settle();

for (let i = 0; i < 200; i++) await once(); // warm up
const start = process.hrtime.bigint();
for (let i = 0; i < iterations; i++) await once();
const elapsed = Number(process.hrtime.bigint() - start) / 1e3;

console.log(JSON.stringify({
    per_execution_us: elapsed / iterations,
    per_context_kib: (after - before) / held / 1024,
    iterations,
    saved: saved > 0,
    node: process.version,
    kept,
}));
