// The `nango` module scripts import (`import { createSync, ActionError } from 'nango'`).
export class ActionError extends Error {
    constructor(payload) {
        super(payload && typeof payload.message === 'string' ? payload.message : 'action error');
        this.name = 'ActionError';
        this.payload = payload;
    }
}

// The object forms: the definition itself; the runner calls its `exec`.
export const createSync = (definition) => definition;
export const createAction = (definition) => definition;
export const createOnEvent = (definition) => definition;
