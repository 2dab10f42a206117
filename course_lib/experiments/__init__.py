"""One module per chapter: its experiments, their settings (module constants) and figures.

* chapter  1: ``erm``
* chapter  2: ``minibatch``
* chapter  3: ``conditioning``
* chapter  4: ``local_minima``
* chapter  5: ``saddles``
* chapter  6: ``cliffs``
* chapter  7: ``long_term``
* chapter  8: ``inexact``
* chapter  9: ``sgd_theory``
* chapter 10: ``momentum``
* chapter 11: ``adaptive``
* chapter 12: ``adam_family``
* chapter 12: ``comparison``
* chapter 13: ``schedules``
* chapter 14: ``monitoring``
* chapter 15: ``second_order``
* chapter 16: ``natural_gradient``
* chapter 17: ``initialization``
* chapter 18: ``normalization``
* chapter 19: ``regularization``
* chapter 20: ``mixed_precision``
* chapter 21: ``data_parallel``
* chapter 22: ``global_view``
"""
