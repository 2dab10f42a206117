"""First-order optimizers written from the equations (Deep Learning book, ch. 8).

Each rule is a pure function that updates one tensor in place and fills a state dict,
``rule_update(theta, g, state, *, lr, ...)``, plus a thin ``torch.optim.Optimizer`` subclass
with the same constructor as its ``torch.optim`` namesake, so the two can be swapped in any
training loop (and used with ``torch.optim.lr_scheduler``).

=============  ====================  ===================  ==========================
class          pure function         torch equivalent     paper
=============  ====================  ===================  ==========================
``SGD``        ``sgd_update``        ``torch.optim.SGD``  Robbins & Monro 1951,
                                                          Polyak 1964, Nesterov 1983
``Adagrad``    ``adagrad_update``    ``Adagrad``          Duchi et al. 2011
``RMSprop``    ``rmsprop_update``    ``RMSprop``          Hinton 2012, Graves 2013
``Adadelta``   ``adadelta_update``   ``Adadelta``         Zeiler 2012
``Adam``       ``adam_update``       ``Adam``             Kingma & Ba 2015,
                                                          Reddi et al. 2018
``AdamW``      ``adam_update``       ``AdamW``            Loshchilov & Hutter 2019
``NAdam``      ``nadam_update``      ``NAdam``            Dozat 2016
``SGDW``       ``sgdw_update``       (none)               Loshchilov & Hutter 2019
``LARS``       ``lars_update``       (none)               You, Gitman & Ginsburg 2017
``LAMB``       ``lamb_update``       (none)               You et al. 2020
=============  ====================  ===================  ==========================

SGDW, LARS and LAMB (chapters 19 and 21) have no torch.optim namesake, so they are not in
``OPTIMIZERS`` (whose entries tests/test_optim.py checks against torch); their tests are hand
computations in their chapters' test files.

Second-order (quasi-Newton), in ``course_lib.optim.lbfgs``: ``LBFGS`` (the iterates of
``torch.optim.LBFGS``; its ``step`` needs a closure, so it is not in ``OPTIMIZERS``), the
two-loop recursion ``lbfgs_direction`` and the dense ``bfgs_inverse_update`` (Nocedal & Wright,
2006, ch. 6–7; Liu & Nocedal, 1989); nonlinear conjugate gradients ``NonlinearCG`` (PR+ or
FR, torch's strong Wolfe line search; N&W §5.2) in ``course_lib.optim.ncg``.
"""
import torch

from course_lib.optim._base import FirstOrderOptimizer
from course_lib.optim.adadelta import Adadelta, adadelta_update
from course_lib.optim.adagrad import Adagrad, adagrad_update
from course_lib.optim.adam import Adam, AdamW, adam_update
from course_lib.optim.lamb import LAMB, lamb_update
from course_lib.optim.lars import LARS, lars_update
from course_lib.optim.lbfgs import LBFGS, bfgs_inverse_update, lbfgs_direction
from course_lib.optim.ncg import NonlinearCG
from course_lib.optim.nadam import NAdam, nadam_update
from course_lib.optim.rmsprop import RMSprop, rmsprop_update
from course_lib.optim.sgd import SGD, sgd_update
from course_lib.optim.sgdw import SGDW, sgdw_update

#: name -> our class
OPTIMIZERS = {
    "SGD": SGD,
    "Adagrad": Adagrad,
    "RMSprop": RMSprop,
    "Adadelta": Adadelta,
    "Adam": Adam,
    "AdamW": AdamW,
    "NAdam": NAdam,
}

#: name -> the torch.optim class ours reproduces
TORCH_EQUIVALENT = {name: getattr(torch.optim, name) for name in OPTIMIZERS}

__all__ = [
    "FirstOrderOptimizer",
    "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam",
    "sgd_update", "adagrad_update", "rmsprop_update", "adadelta_update", "adam_update",
    "nadam_update", "SGDW", "sgdw_update", "LARS", "lars_update", "LAMB", "lamb_update",
    "LBFGS", "lbfgs_direction", "bfgs_inverse_update", "NonlinearCG",
    "OPTIMIZERS", "TORCH_EQUIVALENT",
]
