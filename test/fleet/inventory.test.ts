import { homedir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DEFAULT_STAGING_DIR, InventoryError, loadInventory, parseInventory, selectHosts } from '../../src/fleet/inventory.js';

const FILE = '/srv/fleet/fleet.yaml';

t.test('hosts with defaults applied, in file order', async (t) => {
  const inv = parseInventory(
    `
defaults:
  user: pi
  identity_file: ~/.ssh/fleet_key
  known_hosts_file: known_hosts
  ssh_options: [ServerAliveInterval=5]
hosts:
  kitchen:
    address: 192.168.1.20
    groups: [house, canary]
  barn:
    address: barn.local
    port: 2222
    user: admin
    groups: [farm, house]
    ssh_options: ["ProxyJump=bastion"]
  build-pi:
    builder: true
    sudo: false
    command: /opt/edge-classifier/current/bin/edge-classifier
    staging_dir: /var/tmp/uploads
`,
    FILE,
  );
  t.same(
    inv.hosts.map((h) => h.name),
    ['kitchen', 'barn', 'build-pi'],
  );
  t.same(inv.groups, ['canary', 'farm', 'house']);
  const [kitchen, barn, builder] = inv.hosts;
  t.same(kitchen, {
    name: 'kitchen',
    address: '192.168.1.20',
    port: 22,
    user: 'pi',
    groups: ['house', 'canary'],
    builder: false,
    sudo: true,
    command: 'edge-classifier',
    identityFile: path.join(homedir(), '.ssh/fleet_key'),
    knownHostsFile: '/srv/fleet/known_hosts',
    sshConfigFile: undefined,
    sshOptions: ['ServerAliveInterval=5'],
    stagingDir: DEFAULT_STAGING_DIR,
  });
  t.same([barn!.address, barn!.port, barn!.user, barn!.sshOptions], ['barn.local', 2222, 'admin', ['ServerAliveInterval=5', 'ProxyJump=bastion']]);
  t.same(
    [builder!.address, builder!.builder, builder!.sudo, builder!.stagingDir],
    ['build-pi', true, false, '/var/tmp/uploads'],
    'the address defaults to the name',
  );
  t.equal(parseInventory('hosts: {solo: }', FILE).hosts[0]!.user, undefined, 'no user: ssh decides');
});

t.test('JSON is YAML too', async (t) => {
  t.same(parseInventory('{"hosts":{"a":{"port":2200}}}', FILE).hosts[0]!.port, 2200);
});

const problems = (text: string): readonly string[] => {
  try {
    parseInventory(text, FILE);
  } catch (err) {
    if (err instanceof InventoryError) return err.problems;
    throw err;
  }
  throw new Error('no InventoryError');
};

t.test('every problem names the host, the key and the line', async (t) => {
  t.same(
    problems(`hosts:
  kitchen:
    adress: 10.0.0.1
  barn:
    port: 70000
  shed:
    groups: house
  loft:
    builder: "yes"
`),
    [
      "line 3: host 'kitchen': unknown key 'adress' (known: user, port, sudo, command, identity_file, known_hosts_file, ssh_config_file, ssh_options, staging_dir, address, groups, builder)",
      "line 5: host 'barn' port: expected at most 65535",
      'line 7: host \'shed\' groups: expected a list, got string "house"',
      'line 9: host \'loft\' builder: expected a boolean, got string "yes"',
    ],
  );
  t.same(problems('defaults:\n  user: "pi@x"\nhosts: {a: }\n'), ['line 2: defaults.user: expected a user name without spaces, "@" or ":"']);
  t.same(problems('defaults:\n  address: x\nhosts: {a: }\n'), [
    "line 2: defaults: unknown key 'address' (known: user, port, sudo, command, identity_file, known_hosts_file, ssh_config_file, ssh_options, staging_dir)",
  ]);
  t.same(problems('hosts: {a: {ssh_options: [StrictHostKeyChecking]}}'), ["line 1: host 'a' ssh_options.0: expected 'Key=Value', e.g. 'ProxyJump=bastion'"]);
  t.same(problems('hosts:\n  "bad name": {}\n'), ['line 2: host \'bad name\': host name not valid: expected letters, digits, ".", "_" or "-"']);
  t.same(problems('hosts: {}'), ["line 1: host 'hosts': no hosts; add at least one under 'hosts:'".replace("host 'hosts'", 'hosts')]);
  t.same(problems('- a\n- b\n'), ["expected a mapping with 'hosts' (and optionally 'defaults') at the top level but found a list"]);
  t.same(problems('host:\n  a: {}\n'), ['hosts: missing (expected a mapping)', "line 1: top level: unknown key 'host' (known: defaults, hosts)"]);
  t.match(problems('hosts:\n  a: {}\n  a: {}\n')[0], /^line 3: Map keys must be unique/);
  t.same(problems('hosts:\n  a: {groups: [b]}\n  b: {}\n'), ["group 'b' has the name of a host; host and group names must differ"]);
  t.same(problems('hosts:\n  a: {groups: [all]}\n'), ["group 'all' is reserved (it selects every host)"]);
});

t.test('the error message starts with the file', async (t) => {
  t.throws(() => parseInventory('hosts: {a: {port: 0}}', FILE), { message: `inventory ${FILE}: line 1: host 'a' port: expected at least 1` });
  t.throws(() => loadInventory('/nonexistent/fleet.yaml'), {
    message: 'inventory /nonexistent/fleet.yaml: no such file (give one with --inventory FILE or EDGE_CLASSIFIER_INVENTORY)',
  });
});

t.test('--limit: hosts, groups, all, exclusions', async (t) => {
  const inv = parseInventory('hosts:\n  a: {groups: [house]}\n  b: {groups: [house, barn]}\n  c: {groups: [barn]}\n  d: {}\n', FILE);
  const names = (limit?: string) => selectHosts(inv, limit).map((h) => h.name);
  t.same(names(), ['a', 'b', 'c', 'd']);
  t.same(names('house'), ['a', 'b']);
  t.same(names('c,house'), ['a', 'b', 'c'], 'inventory order, not pattern order');
  t.same(names('all,!barn'), ['a', 'd']);
  t.same(names('!house'), ['c', 'd'], 'only exclusions: from every host');
  t.same(names('house,!b'), ['a']);
  t.throws(() => names('kitchen,barn,attic'), {
    message: `inventory ${FILE}: --limit: no host or group named 'kitchen', 'attic' (hosts: a, b, c, d; groups: barn, house)`,
  });
  t.throws(() => names('house,!house'), { message: `inventory ${FILE}: --limit 'house,!house' selects no host` });
});
