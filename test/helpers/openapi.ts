/**
 * Checks an HTTP answer against the OpenAPI 3.1 document (src/assets/openapi.json) with ajv's
 * JSON Schema 2020-12 build: the path, method and status must be documented, the required
 * headers present and well-formed, and the body valid against its schema (JSON and
 * MessagePack decoded; a JSON body ends with a newline; HEAD and bodiless answers are empty). test/helpers/server.ts runs every
 * answer the test suites receive through it, so the document cannot drift from the server.
 *
 * Answers that Holdfast did not write (a proxy's own error page) carry no `uWebSockets`
 * header and are not checked.
 */

import { readFileSync } from 'node:fs';
import Ajv2020Module from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import { unpack } from 'msgpackr';

// ajv is CommonJS: its default export is the class (module.exports), or under .default.
const Ajv2020 = ((Ajv2020Module as unknown as { default?: unknown }).default ?? Ajv2020Module) as unknown as typeof import('ajv/dist/2020.js').default;

type Json = any;

export const OPENAPI_URL = new URL('../../src/assets/openapi.json', import.meta.url);
export const openapi: Json = JSON.parse(readFileSync(OPENAPI_URL, 'utf8'));

const DOC_ID = 'holdfast-openapi.json';
const ajv = new Ajv2020({ strict: true, strictTypes: false, strictRequired: false, allErrors: true, validateFormats: false });
// The document's own top-level fields are not JSON Schema keywords: declare them, so strict
// mode still catches a typo in any schema.
ajv.addVocabulary(['openapi', 'jsonSchemaDialect', 'info', 'servers', 'tags', 'security', 'paths', 'components', 'webhooks', 'externalDocs']);
ajv.addSchema(openapi, DOC_ID);

const validators = new Map<string, ValidateFunction>();

/** A validator for the schema at a JSON pointer in the document ($refs resolve from its root). */
function validatorAt(pointer: string): ValidateFunction {
  let v = validators.get(pointer);
  if (!v) validators.set(pointer, (v = ajv.compile({ $ref: `${DOC_ID}#${pointer}` })));
  return v;
}

const inline = new WeakMap<object, ValidateFunction>();
function inlineValidator(schema: object): ValidateFunction {
  let v = inline.get(schema);
  if (!v) inline.set(schema, (v = ajv.compile(schema)));
  return v;
}

const escape = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** Follows a local $ref; returns the object and its JSON pointer. */
function deref(node: Json, pointer: string): [Json, string] {
  while (node && typeof node.$ref === 'string') {
    pointer = node.$ref.slice(1);
    node = pointer.split('/').slice(1).reduce((o: Json, k: string) => o?.[k.replace(/~1/g, '/').replace(/~0/g, '~')], openapi);
    if (node === undefined) throw new Error(`openapi: dangling $ref ${pointer}`);
  }
  return [node, pointer];
}

/** Documented paths as regular expressions; a {param} matches anything (the handler judges it). */
const PATHS = Object.keys(openapi.paths).map((template) => ({
  template,
  re: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '.*')}$`),
  params: template.includes('{'),
}));

function findPath(path: string): string | undefined {
  // Exact paths first, so /v1/publish is not read as /v1/publish/{channel}.
  return (PATHS.find((p) => !p.params && p.re.test(path)) ?? PATHS.find((p) => p.params && p.re.test(path)))?.template;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

export interface AnswerToCheck {
  method: string;
  url: string;
  status: number;
  headers: Headers;
  body: Buffer;
}

/** Throws an Error that says what in the answer the document does not allow. */
export function assertMatchesOpenApi(a: AnswerToCheck): void {
  if (!a.headers.has('uwebsockets')) return; // not written by Holdfast
  const problems = problemsOf(a);
  if (problems.length > 0) {
    const shown = a.body.length > 300 ? `${a.body.subarray(0, 300).toString('utf8')}…` : a.body.toString('utf8');
    throw new Error(`answer does not match src/assets/openapi.json: ${a.method} ${new URL(a.url).pathname} → ${a.status}\n  - ${problems.join('\n  - ')}\n  body: ${shown}`);
  }
}

export function problemsOf(a: AnswerToCheck): string[] {
  const method = a.method.toLowerCase();
  const path = new URL(a.url).pathname;
  const template = findPath(path);
  let responses: Record<string, Json>;
  let where: string;
  if (method === 'options') {
    // The preflight answers on every path.
    const op = openapi.paths['/v1/poll'].options;
    responses = op.responses;
    where = `/paths/${escape('/v1/poll')}/options/responses`;
  } else if (template === undefined) {
    responses = { 404: { $ref: '#/components/responses/NotFound' }, 400: { $ref: '#/components/responses/BadRequest' }, 431: { $ref: '#/components/responses/HeadersTooLarge' } };
    where = '(undocumented path)';
  } else if (!openapi.paths[template][method]) {
    const allow = METHODS.filter((m) => m !== 'options' && openapi.paths[template][m]).map((m) => m.toUpperCase()).join(', ');
    responses = { 405: { $ref: '#/components/responses/MethodNotAllowed' }, 400: { $ref: '#/components/responses/BadRequest' }, 431: { $ref: '#/components/responses/HeadersTooLarge' } };
    where = `(method ${a.method} not documented on ${template})`;
    if (a.status === 405 && a.headers.get('allow') !== allow) return [`Allow is ${JSON.stringify(a.headers.get('allow'))}; the document's methods for ${template} are ${JSON.stringify(allow)}`];
  } else {
    responses = openapi.paths[template][method].responses;
    where = `/paths/${escape(template)}/${method}/responses`;
  }
  const entry = responses[String(a.status)] ?? responses.default;
  if (!entry) return [`status ${a.status} is not documented for ${a.method.toUpperCase()} ${template ?? path} ${where.startsWith('(') ? where : ''}; documented: ${Object.keys(responses).join(', ')}`];
  const [response, pointer] = deref(entry, `${where}/${a.status}`);
  return [...headerProblems(response, a.headers), ...bodyProblems(response, pointer, a, method)];
}

function headerProblems(response: Json, headers: Headers): string[] {
  const out: string[] = [];
  for (const [name, h] of Object.entries<Json>(response.headers ?? {})) {
    const [header, pointer] = deref(h, '');
    const value = headers.get(name);
    if (value === null) {
      if (header.required) out.push(`header ${name} is required`);
      continue;
    }
    if (!header.schema) continue;
    const v = pointer ? validatorAt(`${pointer}/schema`) : inlineValidator(header.schema);
    if (!v(value)) out.push(`header ${name}: ${JSON.stringify(value)} ${ajv.errorsText(v.errors)}`);
  }
  return out;
}

function bodyProblems(response: Json, pointer: string, a: AnswerToCheck, method: string): string[] {
  if (method === 'head' || !response.content) {
    return a.body.length === 0 ? [] : [`the answer must have no body (${method === 'head' ? 'HEAD' : 'none documented'}), got ${a.body.length} bytes`];
  }
  const type = (a.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  const media = response.content[type];
  if (!media) return [`Content-Type ${JSON.stringify(type)} is not documented; documented: ${Object.keys(response.content).join(', ')}`];
  if (type === 'application/json' && a.body.length > 0 && a.body[a.body.length - 1] !== 0x0a) return ['a JSON answer must end with a newline'];
  let value: unknown;
  try {
    if (type === 'application/json') value = JSON.parse(a.body.toString('utf8'));
    else if (type === 'application/msgpack') value = unpack(a.body);
    else value = a.body.toString('utf8');
  } catch (err) {
    return [`the ${type} body does not parse: ${(err as Error).message}`];
  }
  if (!media.schema) return [];
  const v = validatorAt(`${pointer}/content/${escape(type)}/schema`);
  return v(value) ? [] : [`body: ${ajv.errorsText(v.errors, { separator: '; ' })}`];
}

/** Problems of `value` against components.schemas[name] (for stream events and frames). */
export function schemaProblems(name: string, value: unknown): string[] {
  if (!openapi.components.schemas[name]) throw new Error(`openapi: no schema ${name}`);
  const v = validatorAt(`/components/schemas/${escape(name)}`);
  return v(value) ? [] : [`${name}: ${ajv.errorsText(v.errors, { separator: '; ' })}`];
}
