// The `nango` module scripts import (`import { createSync, ActionError } from 'nango'`).
export class ActionError extends Error {
    constructor(payload) {
        super(payload && typeof payload.message === 'string' ? payload.message : 'action error');
        this.name = 'ActionError';
        this.payload = payload;
    }
}

// The object forms: the definition itself, marked with its kind (what the compiler reads when it
// evaluates the script); the runner calls its `exec`.
const KIND = Symbol.for('lasso.kind');
const mark = (kind) => (definition) => {
    if (definition !== null && typeof definition === 'object') {
        Object.defineProperty(definition, KIND, { value: kind, enumerable: false });
    }
    return definition;
};
export const createSync = mark('sync');
export const createAction = mark('action');
export const createOnEvent = mark('on-event');
