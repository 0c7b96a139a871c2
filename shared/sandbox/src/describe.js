// Reads a function's configuration at compile time from what its default export evaluated to
// (the object `createSync` / `createAction` / `createOnEvent` returned): models and schemas
// become JSON Schema through zod's own `toJSONSchema`. Returns plain JSON for describe.rs.
const KIND = Symbol.for('lasso.kind');

// zod types JSON Schema cannot express; a model using one is refused, naming the path.
const REFUSED = new Set(['function', 'symbol', 'promise', 'map', 'set', 'bigint', 'custom']);

const isZod = (v) => v !== null && typeof v === 'object' && typeof v._zod === 'object';
const zodType = (v) => (isZod(v) ? v._zod.def.type : undefined);

// Loaded only for a definition that has zod schemas.
let zod;
const loadZod = async () => (zod ??= (await import('zod')).z);

async function toSchema(schema, where, problems) {
    const z = await loadZod();
    const refused = [];
    let json;
    try {
        json = z.toJSONSchema(schema, {
            unrepresentable: 'any',
            override(ctx) {
                const type = ctx.zodSchema._zod.def.type;
                if (type === 'date') {
                    ctx.jsonSchema.type = 'string';
                    ctx.jsonSchema.format = 'date-time';
                } else if (REFUSED.has(type)) {
                    refused.push(type);
                }
            },
        });
    } catch (e) {
        problems.push(`${where}: zod cannot convert this schema to JSON Schema: ${e && e.message ? e.message : String(e)}`);
        return null;
    }
    if (refused.length > 0) {
        problems.push(`${where}: JSON Schema cannot express z.${refused[0]}() (used in this schema); describe the data with JSON types`);
        return null;
    }
    delete json.$schema;
    return json;
}

// A model slot: a zod schema, or (Lasso's older form) an object of nango.yaml field types.
async function model(name, value, where, problems) {
    if (isZod(value)) {
        const schema = await toSchema(value, where, problems);
        return { name, json_schema: schema };
    }
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        try {
            return { name, fields: JSON.parse(JSON.stringify(value)) };
        } catch (e) {
            problems.push(`${where}: the fields cannot be represented as JSON: ${e.message}`);
            return null;
        }
    }
    problems.push(`${where}: expected a zod schema, got ${value === null ? 'null' : typeof value}`);
    return null;
}

const compact = (s) => String(s).toLowerCase().replace(/[^a-z0-9]/g, '');

export async function describe(definition, integration, name) {
    if (typeof definition === 'function') {
        return { kind: null };
    }
    if (definition === null || typeof definition !== 'object' || !definition[KIND]) {
        return {
            kind: null,
            problems: ['the default export is not what createSync, createAction or createOnEvent returns (nor a function)'],
        };
    }
    const kind = definition[KIND];
    const problems = [];
    const d = definition;
    const strings = (v, field) => {
        if (v === undefined) {
            return [];
        }
        if (Array.isArray(v) && v.every((s) => typeof s === 'string')) {
            return v;
        }
        problems.push(`\`${field}\`: expected an array of strings`);
        return [];
    };
    const out = {
        kind,
        description: d.description,
        version: d.version,
        scopes: strings(d.scopes, 'scopes'),
        problems,
        models: [],
        output: [],
    };
    if (typeof d.exec !== 'function') {
        problems.push(`\`exec\`: expected a function`);
    }
    const endpoints = kind === 'action' ? d.endpoint ?? d.endpoints : d.endpoints ?? d.endpoint;
    out.endpoints = endpoints === undefined ? [] : Array.isArray(endpoints) ? endpoints : [endpoints];
    if (d.metadata !== undefined) {
        out.metadata = isZod(d.metadata) ? await toSchema(d.metadata, '`metadata`', problems) : null;
    }
    if (d.checkpoint !== undefined) {
        out.checkpoint = isZod(d.checkpoint) ? await toSchema(d.checkpoint, '`checkpoint`', problems) : null;
    }
    if (kind === 'sync') {
        out.frequency = d.frequency ?? d.runs;
        out.autoStart = d.autoStart;
        out.syncType = d.syncType;
        out.trackDeletes = d.trackDeletes;
        out.webhookSubscriptions = strings(d.webhookSubscriptions, 'webhookSubscriptions');
        if (d.models === null || typeof d.models !== 'object') {
            problems.push('`models`: expected `{ ModelName: zodSchema }`');
        } else {
            for (const [modelName, value] of Object.entries(d.models)) {
                const m = await model(modelName, value, `\`models.${modelName}\``, problems);
                if (m) {
                    out.models.push(m);
                    out.output.push(modelName);
                }
            }
        }
        if (isZod(d.input)) {
            const m = await model(`SyncInput_${integration}_${compact(name)}`, d.input, '`input`', problems);
            if (m) {
                out.models.push(m);
                out.input = m.name;
            }
        }
    } else if (kind === 'action') {
        for (const [field, prefix] of [['input', 'ActionInput'], ['output', 'ActionOutput']]) {
            const value = d[field];
            if (value === undefined || ['void', 'undefined', 'never'].includes(zodType(value))) {
                continue;
            }
            const meta = isZod(value) && typeof value.meta === 'function' ? value.meta() : undefined;
            const modelName = meta && typeof meta.id === 'string' ? meta.id : `${prefix}_${integration}_${compact(name)}`;
            const m = await model(modelName, value, `\`${field}\``, problems);
            if (m) {
                out.models.push(m);
                if (field === 'input') {
                    out.input = modelName;
                } else {
                    out.output.push(modelName);
                }
            }
        }
    } else {
        out.event = d.event;
    }
    return JSON.parse(JSON.stringify(out));
}
