/** The credential of an `Authorization: Bearer <credential>` header (publish key or JWT). */

/** The bearer credential of an Authorization header value, or undefined when there is none. */
export function bearer(authorization: string): string | undefined {
  if (authorization.length < 8 || authorization.slice(0, 7).toLowerCase() !== 'bearer ') return undefined;
  const credential = authorization.slice(7).trim();
  return credential.length > 0 ? credential : undefined;
}
