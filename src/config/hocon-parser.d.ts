// Minimal typings for @pushcorn/hocon-parser (it ships none). Only what the HOCON loader uses.
declare module '@pushcorn/hocon-parser' {
  export interface HoconContextOptions {
    url?: string;
    text?: string;
    strict?: boolean;
    required?: boolean;
    env?: boolean;
  }
  export class Context {
    constructor(opts: HoconContextOptions);
    resolve(): Promise<unknown>;
    readonly node: unknown;
    readonly url: { readonly path: string; readonly href: string } | null;
  }
  interface Parser {
    (opts: HoconContextOptions): Promise<unknown>;
    Context: typeof Context;
  }
  const parser: Parser;
  export default parser;
}
