import t from 'tap';
import { checkGpioRules, evaluate, gpioRule, parseGpioFlag, unknownLabels } from '../../src/gpio/rules.js';

t.test('flag grammar: PIN=LABEL[|LABEL…][@MIN_SCORE][:active-low][:hold=MS]', async (t) => {
  t.same(parseGpioFlag('17=cheeseburger'), { pin: 17, labels: ['cheeseburger'], minScore: 0.5, activeLow: false, holdMs: 0 });
  t.same(parseGpioFlag('17=cat|dog').labels, ['cat', 'dog']);
  t.equal(parseGpioFlag('17=cat@0.6').minScore, 0.6);
  t.equal(parseGpioFlag('17=cat@.25').minScore, 0.25);
  t.equal(parseGpioFlag('17=cat@1').minScore, 1);
  t.same(parseGpioFlag('27=Egyptian cat|tabby, tabby cat@0.4:active-low:hold=2000'), {
    pin: 27,
    labels: ['Egyptian cat', 'tabby, tabby cat'],
    minScore: 0.4,
    activeLow: true,
    holdMs: 2000,
  });
  t.same(parseGpioFlag('4=cat:hold=1500ms:active-low'), { pin: 4, labels: ['cat'], minScore: 0.5, activeLow: true, holdMs: 1500 }, 'options in any order');
  t.same(parseGpioFlag(' 5 = great white shark, white shark, man-eater '), {
    pin: 5,
    labels: ['great white shark, white shark, man-eater'],
    minScore: 0.5,
    activeLow: false,
    holdMs: 0,
  }, 'commas belong to the label; spaces around are trimmed');
  t.equal(parseGpioFlag('0=x').pin, 0);
});

t.test('flag errors quote the flag, say what is wrong and give the grammar', async (t) => {
  const grammar = "expected PIN=LABEL[|LABEL…][@MIN_SCORE][:active-low][:hold=MS], e.g. '17=Egyptian cat|tabby, tabby cat@0.6:active-low:hold=2000'";
  t.throws(() => parseGpioFlag('cat'), { message: `--gpio 'cat': no '='; ${grammar}` });
  t.throws(() => parseGpioFlag('GPIO17=cat'), { message: `--gpio 'GPIO17=cat': pin 'GPIO17' is not a BCM GPIO number; ${grammar}` });
  t.throws(() => parseGpioFlag('28=cat'), { message: `--gpio '28=cat': pin 28 is not a BCM GPIO number 0..27; ${grammar}` });
  t.throws(() => parseGpioFlag('-1=cat'), /pin '-1' is not a BCM GPIO number/);
  t.throws(() => parseGpioFlag('17=cat@1.5'), { message: `--gpio '17=cat@1.5': min score 1.5 is outside [0,1]; ${grammar}` });
  t.throws(() => parseGpioFlag('17=cat@high'), /min score 'high' is not a number/);
  t.throws(() => parseGpioFlag('17=cat@'), /min score '' is not a number/);
  t.throws(() => parseGpioFlag('17='), /a label is empty/);
  t.throws(() => parseGpioFlag('17=cat||dog'), /a label is empty/);
  t.throws(() => parseGpioFlag('17=cat:activelow'), /unknown option ':activelow' \(known: :active-low, :hold=MS\)/);
  t.throws(() => parseGpioFlag('17=cat:hold=2s'), /hold '2s' is not a whole number of milliseconds/);
  t.throws(() => parseGpioFlag('17=cat:hold=1:hold=2'), /':hold=' given twice/);
  t.throws(() => parseGpioFlag('17=cat:active-low:active-low'), /':active-low' given twice/);
});

t.test('config rules: defaults and validation', async (t) => {
  t.same(gpioRule({ pin: 22, labels: ['bin'], name: 'bin-full' }), { pin: 22, labels: ['bin'], minScore: 0.5, activeLow: false, holdMs: 0, name: 'bin-full' });
  t.throws(() => gpioRule({ pin: 40, labels: ['x'] }, 'gpio.rules[2]'), { message: 'gpio.rules[2]: pin 40 is not a BCM GPIO number: expected an integer 0..27' });
  t.throws(() => gpioRule({ pin: 4, labels: [] }, 'gpio.rules[0]'), /gpio.rules\[0\]: pin 4 has no labels/);
  t.throws(() => gpioRule({ pin: 4, labels: ['a', ' '] }), /pin 4 label #2 is empty/);
  t.throws(() => gpioRule({ pin: 4, labels: ['a'], minScore: -0.1 }), /pin 4 minScore -0\.1 is not a score: expected a number in \[0,1\]/);
  t.throws(() => gpioRule({ pin: 4, labels: ['a'], holdMs: 1.5 }), /pin 4 holdMs 1\.5: expected a whole number of milliseconds/);
});

t.test('duplicate pins are refused', async (t) => {
  const a = parseGpioFlag('17=cat');
  const b = gpioRule({ pin: 17, labels: ['dog'], name: 'dog-light' });
  t.throws(() => checkGpioRules([a, parseGpioFlag('4=x'), b]), {
    message: "GPIO BCM pin 17 is used by two rules ('cat' and 'dog-light'): expected one rule per pin (list several labels in one rule instead)",
  });
  t.equal(checkGpioRules([a, parseGpioFlag('4=x')]).length, 2);
});

t.test('evaluate: any label among the top-k with score ≥ minScore, case-insensitive, whole label', async (t) => {
  const rule = parseGpioFlag('17=egyptian CAT|tabby, tabby cat@0.6');
  const top = (...c: Array<[string, number]>) => c.map(([label, score], index) => ({ index, label, score }));
  t.equal(evaluate(rule, top(['Egyptian cat', 0.75])), true);
  t.equal(evaluate(rule, top(['Egyptian cat', 0.6])), true, 'score equal to minScore counts');
  t.equal(evaluate(rule, top(['Egyptian cat', 0.59])), false);
  t.equal(evaluate(rule, top(['tiger cat', 0.3], ['tabby, tabby cat', 0.65])), true, 'not only the top class');
  t.equal(evaluate(rule, top(['tabby', 0.9])), false, 'a synonym inside a label does not match');
  t.equal(evaluate(rule, top(['Egyptian cats', 0.9])), false);
  t.equal(evaluate(rule, []), false);
  const hotdog = parseGpioFlag('5=hotdog');
  t.equal(evaluate(hotdog, top(['hotdog, hot dog, red hot', 0.94])), true, 'a synonym of an ImageNet label matches');
  t.equal(evaluate(parseGpioFlag('5=hot dog'), top(['hotdog, hot dog, red hot', 0.94])), true);
  t.equal(evaluate(parseGpioFlag('5=red'), top(['hotdog, hot dog, red hot', 0.94])), false, 'never part of a name');
});

t.test('unknownLabels: labels no class of the model has', async (t) => {
  const model = ['background', 'tabby, tabby cat', 'Egyptian cat', 'hotdog, hot dog, red hot'];
  t.same(unknownLabels(parseGpioFlag('17=Egyptian cat|tabby|hot dog'), model), []);
  t.same(unknownLabels(parseGpioFlag('17=cat|Egyptian Cat|cheeseburger'), model), ['cat', 'cheeseburger']);
});
