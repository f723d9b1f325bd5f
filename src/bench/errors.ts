/** The benchmark's errors: a bad flag or YAML field is a ConfigError naming the field. */
import { ConfigError } from '../core/errors.js';

/** A benchmark option is missing or invalid; `param` names it as the flag or YAML field. */
export class BenchConfigError extends ConfigError {}
