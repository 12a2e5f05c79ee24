"""The runnable demonstration of the math page, against the formula."""

import math

import numpy as np
from conftest import kl_penalty_reference, load_script


def test_notebook_mistakes_demonstration(capsys):
    demo = load_script("examples/notebook_mistakes.py", "notebook_mistakes")
    demo.main()
    lines = capsys.readouterr().out.splitlines()
    activations = np.zeros((256, 200))
    activations[:, :2] = 1.0
    correct = float(lines[1].split(":")[1])
    assert correct == round(kl_penalty_reference(activations, 0.01, 3.0), 4)
    assert float(lines[2].split(":")[1]) == 0.0
    assert float(lines[3].split(":")[1]) < 0.0  # a negative "penalty"
    table = {float(r.split()[0]): r.split()[1:] for r in lines[7:]}
    assert float(table[0.5][0]) == round(math.log(0.99 / 0.5), 4)
    assert float(table[0.5][1]) == round(math.log(1 - 0.01 - 0.5), 4)
    assert table[0.995][1] == "nan"
