// Finding and loading the top-level config: work/configs/images.yaml or images.conf selects it (usually a
// symlink to e.g. alpine.yaml or alpine.conf in the same directory). YAML and HOCON trees load the same way.
import { readlink, realpath } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { lexists } from '../util/fs.js';
import { ConfigError } from './errors.js';
import { SELECTORS } from './workdir.js';
import { type LoadedTree, loadYamlTree } from './yaml-loader.js';

export type ConfigFormat = 'yaml' | 'hocon';

export interface TopLevel {
  readonly selector: string;
  readonly file: string;
  readonly format: ConfigFormat;
}

const HOCON_EXT = new Set(['.conf', '.hocon', '.json', '.properties']);
const YAML_EXT = new Set(['.yaml', '.yml']);

export async function findTopLevel(configsDir: string, display: (abs: string) => string): Promise<TopLevel> {
  const present: string[] = [];
  for (const s of SELECTORS) if (await lexists(join(configsDir, s))) present.push(s);
  if (present.length === 0) {
    throw new ConfigError(
      `no top-level config selector: expected ${SELECTORS.join(' or ')} in ${display(configsDir)}`,
    );
  }
  if (present.length > 1) {
    throw new ConfigError(
      `both ${present.join(' and ')} exist in ${display(configsDir)}: keep only the one that selects your top-level config`,
    );
  }
  const selector = join(configsDir, present[0]!);
  let file: string;
  try {
    file = await realpath(selector);
  } catch {
    let target = '';
    try {
      target = ` -> ${await readlink(selector)}`;
    } catch {
      // not a symlink
    }
    throw new ConfigError(`${display(selector)}${target}: the selected top-level config does not exist`);
  }
  const ext = extname(file).toLowerCase();
  const format: ConfigFormat = YAML_EXT.has(ext)
    ? 'yaml'
    : HOCON_EXT.has(ext)
      ? 'hocon'
      : selector.endsWith('.conf')
        ? 'hocon'
        : 'yaml';
  return { selector, file, format };
}

export async function loadTree(top: TopLevel, display: (abs: string) => string): Promise<LoadedTree> {
  if (top.format !== 'hocon') return loadYamlTree(top.file, display);
  // the HOCON parser loads only for HOCON trees
  const { loadHoconTree } = await import('./hocon-loader.js');
  return await loadHoconTree(top.file, display);
}
