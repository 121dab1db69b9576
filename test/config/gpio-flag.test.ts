import t from 'tap';
import { parseGpioFlag } from '../../src/config/gpio-flag.js';

t.test('flag grammar: PIN=LABEL[|LABEL…], then @MIN_SCORE, :active-low, :hold=MS in any order', async (t) => {
  t.same(parseGpioFlag('17=cheeseburger'), { pin: 17, labels: ['cheeseburger'], min_score: 0.5, active_low: false, hold_ms: 0 });
  t.same(parseGpioFlag('17=cat|dog').labels, ['cat', 'dog']);
  t.equal(parseGpioFlag('17=cat@0.6').min_score, 0.6);
  t.equal(parseGpioFlag('17=cat@.25').min_score, 0.25);
  t.equal(parseGpioFlag('17=cat@1').min_score, 1);
  t.same(parseGpioFlag('27=Egyptian cat|tabby, tabby cat@0.4:active-low:hold=2000'), {
    pin: 27,
    labels: ['Egyptian cat', 'tabby, tabby cat'],
    min_score: 0.4,
    active_low: true,
    hold_ms: 2000,
  });
  t.same(parseGpioFlag('4=cat:hold=1500ms:active-low'), { pin: 4, labels: ['cat'], min_score: 0.5, active_low: true, hold_ms: 1500 }, 'options in any order');
  t.same(
    parseGpioFlag(' 5 = great white shark, white shark, man-eater '),
    {
      pin: 5,
      labels: ['great white shark, white shark, man-eater'],
      min_score: 0.5,
      active_low: false,
      hold_ms: 0,
    },
    'commas belong to the label; spaces around are trimmed',
  );
  t.equal(parseGpioFlag('0=x').pin, 0);
  // The options after the labels come in any order: none of them is ever read as part of a label.
  const expected = { pin: 17, labels: ['Egyptian cat'], min_score: 0.6, active_low: true, hold_ms: 2000 };
  for (const flag of [
    '17=Egyptian cat:active-low:hold=2000@0.6',
    '17=Egyptian cat@0.6:active-low:hold=2000',
    '17=Egyptian cat:hold=2000@0.6:active-low',
    '17=Egyptian cat:hold=2000:active-low@0.6',
  ]) {
    t.same(parseGpioFlag(flag), expected, flag);
  }
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
  t.throws(() => parseGpioFlag('17=cat@0.5:active-low@0.6'), /'@' given twice/);
  t.throws(() => parseGpioFlag('17=cat:active-lo:hold=5@0.6'), {
    message: `--gpio '17=cat:active-lo:hold=5@0.6': unknown option ':active-lo' (known: :active-low, :hold=MS); ${grammar}`,
  });
});
