// Registered with `node --import`: appends the URL of every module resolved to the file named by HERALD_LOADS.
import { register } from 'node:module';

register('data:text/javascript,' + encodeURIComponent(`
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(${JSON.stringify(process.env.HERALD_LOADS)}, result.url + '\\n');
  return result;
}
`));
