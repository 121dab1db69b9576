import t from 'tap';
import { evaluate, unknownLabels, unknownLabelWarnings } from '../../src/gpio/rules.js';
import { rule } from '../helpers/gpio.js';

t.test('evaluate: any label among the top-k with score ≥ minScore, case-insensitive, whole label', async (t) => {
  const cat = rule('17=egyptian CAT|tabby, tabby cat@0.6');
  const top = (...c: Array<[string, number]>) => c.map(([label, score], index) => ({ index, label, score }));
  t.equal(evaluate(cat, top(['Egyptian cat', 0.75])), true);
  t.equal(evaluate(cat, top(['Egyptian cat', 0.6])), true, 'score equal to minScore counts');
  t.equal(evaluate(cat, top(['Egyptian cat', 0.59])), false);
  t.equal(evaluate(cat, top(['tiger cat', 0.3], ['tabby, tabby cat', 0.65])), true, 'not only the top class');
  t.equal(evaluate(cat, top(['tabby', 0.9])), false, 'a synonym inside a label does not match');
  t.equal(evaluate(cat, top(['Egyptian cats', 0.9])), false);
  t.equal(evaluate(cat, []), false);
  const hotdog = rule('5=hotdog');
  t.equal(evaluate(hotdog, top(['hotdog, hot dog, red hot', 0.94])), true, 'a synonym of an ImageNet label matches');
  t.equal(evaluate(rule('5=hot dog'), top(['hotdog, hot dog, red hot', 0.94])), true);
  t.equal(evaluate(rule('5=red'), top(['hotdog, hot dog, red hot', 0.94])), false, 'never part of a name');
});

t.test('unknownLabels: labels no class of the model has', async (t) => {
  const model = ['background', 'tabby, tabby cat', 'Egyptian cat', 'hotdog, hot dog, red hot'];
  t.same(unknownLabels(rule('17=Egyptian cat|tabby|hot dog'), model), []);
  t.same(unknownLabels(rule('17=cat|Egyptian Cat|cheeseburger'), model), ['cat', 'cheeseburger']);
});

t.test('unknownLabelWarnings: one sentence per rule, nothing without model labels', async (t) => {
  const model = ['background', 'tabby, tabby cat', 'Egyptian cat'];
  t.same(unknownLabelWarnings([rule('17=Egyptian cat|kitty'), rule('27=tabby'), rule('4=dog|cat')], model), [
    { pin: 17, labels: ['kitty'], message: 'GPIO 17: the model has no class named "kitty": that label will never switch the output' },
    { pin: 4, labels: ['dog', 'cat'], message: 'GPIO 4: the model has no class named "dog", "cat": that label will never switch the output' },
  ]);
  t.same(unknownLabelWarnings([rule('17=kitty')], []), [], 'a model without labels: nothing to compare with');
});
