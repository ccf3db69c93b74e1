import { z } from 'zod';

/**
 * Building blocks for wire schemas. OpenEnv's Python client sends "" and null for parameters it was not
 * given; both count as "not given", and the published JSON Schema says so (an `anyOf` with "" and null),
 * so a client that validates against it sends what the server accepts.
 */

/** An optional input field that also accepts "" and null as "not given". */
export function optionalField<T extends z.ZodType>(schema: T, description: string) {
  return z
    .union([schema, z.literal(''), z.null()])
    .transform((value) => (value === '' || value === null ? undefined : (value as z.output<T>)))
    .optional()
    .describe(description);
}

/** Like `optionalField`, but "not given" means `defaultValue`, which the published schema shows. */
export function fieldWithDefault<T extends z.ZodType>(schema: T, defaultValue: z.output<T>, description: string) {
  return z
    .union([schema, z.literal(''), z.null()])
    .optional()
    .transform((value) => (value === '' || value === null || value === undefined ? defaultValue : (value as z.output<T>)))
    .meta({ description, default: defaultValue });
}
