"""course_lib: the library behind the course *Optimization for Training Deep Models*.

Every method the chapters use lives here, once; notebooks import it.  Public names are
re-exported below, grouped by module.
"""
from course_lib.utils import seed_everything, get_device

# optim
from course_lib.optim import SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, NAdam, OPTIMIZERS
