"""course_lib: the library behind the course *Optimization for Training Deep Models*.

Every method the chapters use lives here, once; notebooks import it.  The tree shows the design:

* the **core** that students call, at the top: ``optim`` (every optimizer from its equations),
  ``landscapes`` (toy cost surfaces), ``curvature`` (Hessian-vector products, spectra), ``train``
  (the one training loop, CPU or GPU), ``data``, ``models``, ``plots``, ``widgets``, ``checks``
  (exercise self-checks), ``utils``;
* ``course_lib.experiments``: one module per chapter with its experiments and settings
  (``experiments.erm`` is chapter 1, ..., ``experiments.monitoring`` chapter 14);
* ``course_lib.tooling``: what builds and grades the course (``notebooks``, ``grading``, ``book``,
  ``lab_config``), which students never import.

``import course_lib`` loads only the core's training names (and torch); a chapter module, the
plotting and widget modules and the chapter functions re-exported here load on first use, so
``from course_lib import erm`` and ``course_lib.empirical_risk`` both work.
"""
from importlib import import_module as _import_module

from course_lib.utils import seed_everything, get_device
from course_lib.optim import SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, NAdam, OPTIMIZERS
from course_lib.landscapes import (Landscape, Quadratic, Rosenbrock, Beale, Saddle, Plateau,
                                   Cliff, LocalMinima, Trajectory, run_optimizer, newton_step,
                                   newton_path, check_grad)
from course_lib.curvature import (hvp, hessian_matrix, top_eigenvalue, lanczos_eigenvalues,
                                  hessian_spectrum_density, gradient_curvature,
                                  minibatch_gradient_noise)
from course_lib.data import (Split, train_val_split, mnist1d, digits, polynomial_features,
                             PolynomialRegressionTask, GaussianClassificationTask, load_idx,
                             load_mnist_folder)
from course_lib.models import mlp, small_cnn, VanillaRNN
from course_lib.train import train, evaluate, History, EarlyStopping, TrainingDiverged
from course_lib import landscapes, curvature

# name -> module, loaded on first access
_MODULES = {
    'plots': 'course_lib.plots',
    'widgets': 'course_lib.widgets',
    'erm': 'course_lib.experiments.erm',
    'minibatch': 'course_lib.experiments.minibatch',
    'conditioning': 'course_lib.experiments.conditioning',
    'local_minima': 'course_lib.experiments.local_minima',
    'saddles': 'course_lib.experiments.saddles',
    'cliffs': 'course_lib.experiments.cliffs',
    'long_term': 'course_lib.experiments.long_term',
    'inexact': 'course_lib.experiments.inexact',
    'sgd_theory': 'course_lib.experiments.sgd_theory',
    'momentum': 'course_lib.experiments.momentum',
    'adaptive': 'course_lib.experiments.adaptive',
    'adam_family': 'course_lib.experiments.adam_family',
    'comparison': 'course_lib.experiments.comparison',
    'schedules': 'course_lib.experiments.schedules',
    'monitoring': 'course_lib.experiments.monitoring',
    'checks': 'course_lib.checks',
    'experiments': 'course_lib.experiments',
    'tooling': 'course_lib.tooling',
}

# chapter functions re-exported at the top, name -> the module that defines them
_NAMES = {
    'empirical_risk': 'course_lib.experiments.erm',
    'fit_polynomial': 'course_lib.experiments.erm',
    'risk_vs_degree': 'course_lib.experiments.erm',
    'risk_vs_n': 'course_lib.experiments.erm',
    'zero_one_loss': 'course_lib.experiments.erm',
    'logistic_loss': 'course_lib.experiments.erm',
    'train_logistic_regression': 'course_lib.experiments.erm',
    'early_stopping_experiment': 'course_lib.experiments.erm',
    'per_example_gradients': 'course_lib.experiments.minibatch',
    'gradient_moments': 'course_lib.experiments.minibatch',
    'gradient_noise_experiment': 'course_lib.experiments.minibatch',
    'redundancy_experiment': 'course_lib.experiments.minibatch',
    'time_per_update': 'course_lib.experiments.minibatch',
    'activation_bytes': 'course_lib.experiments.minibatch',
    'critical_lr': 'course_lib.experiments.minibatch',
    'stability_experiment': 'course_lib.experiments.minibatch',
    'ordering_experiment': 'course_lib.experiments.minibatch',
    'generalization_experiment': 'course_lib.experiments.minibatch',
    'loss_vs_examples': 'course_lib.experiments.minibatch',
    'taylor_check': 'course_lib.experiments.conditioning',
    'gd_losses': 'course_lib.experiments.conditioning',
    'largest_stable_lr': 'course_lib.experiments.conditioning',
    'iterations_to_tolerance': 'course_lib.experiments.conditioning',
    'conditioning_sweep': 'course_lib.experiments.conditioning',
    'train_with_curvature': 'course_lib.experiments.conditioning',
    'newton_cost': 'course_lib.experiments.conditioning',
    'permute_hidden_units': 'course_lib.experiments.local_minima',
    'rescale_hidden_units': 'course_lib.experiments.local_minima',
    'count_permutation_symmetries': 'course_lib.experiments.local_minima',
    'gd_basins': 'course_lib.experiments.local_minima',
    'teacher_student_task': 'course_lib.experiments.local_minima',
    'train_from_many_seeds': 'course_lib.experiments.local_minima',
    'stationarity_ratio': 'course_lib.experiments.local_minima',
    'inspect_end_point': 'course_lib.experiments.local_minima',
    'hessian_index': 'course_lib.experiments.saddles',
    'classify_critical_point': 'course_lib.experiments.saddles',
    'RandomField': 'course_lib.experiments.saddles',
    'DeepLinearNetwork': 'course_lib.experiments.saddles',
    'find_critical_points': 'course_lib.experiments.saddles',
    'RNNCliff': 'course_lib.experiments.cliffs',
    'wall_slopes': 'course_lib.experiments.cliffs',
    'growth_factor': 'course_lib.experiments.cliffs',
    'clip_gradient': 'course_lib.experiments.cliffs',
    'angle_between': 'course_lib.experiments.cliffs',
    'step_lengths': 'course_lib.experiments.cliffs',
    'single_step': 'course_lib.experiments.cliffs',
    'compare_clipping': 'course_lib.experiments.cliffs',
    'catapult_census': 'course_lib.experiments.cliffs',
    'threshold_sweep': 'course_lib.experiments.cliffs',
    'matrix_with_eigenvalues': 'course_lib.experiments.long_term',
    'eigen_power': 'course_lib.experiments.long_term',
    'power_norms': 'course_lib.experiments.long_term',
    'log_slope': 'course_lib.experiments.long_term',
    'state_gradient_norms': 'course_lib.experiments.long_term',
    'rnn_gradient_experiment': 'course_lib.experiments.long_term',
    'backprop_norms': 'course_lib.experiments.long_term',
    'compare_shared_independent': 'course_lib.experiments.long_term',
    'noisy_sgd': 'course_lib.experiments.inexact',
    'predicted_noise_floor': 'course_lib.experiments.inexact',
    'biased_fixed_point': 'course_lib.experiments.inexact',
    'max_margin_vector': 'course_lib.experiments.inexact',
    'logistic_regression_gd': 'course_lib.experiments.inexact',
    'gaussian_nll': 'course_lib.experiments.inexact',
    'fit_gaussian_precision': 'course_lib.experiments.inexact',
    'Mountain': 'course_lib.experiments.inexact',
    'descend_from': 'course_lib.experiments.inexact',
    'path_length': 'course_lib.experiments.inexact',
    'parity_task': 'course_lib.experiments.inexact',
    'parity_network': 'course_lib.experiments.inexact',
    'width_sweep': 'course_lib.experiments.inexact',
    'NoisyLinearRegression': 'course_lib.experiments.sgd_theory',
    'LeastSquares': 'course_lib.experiments.sgd_theory',
    'minibatch_sgd': 'course_lib.experiments.sgd_theory',
    'stream_sgd': 'course_lib.experiments.sgd_theory',
    'compare_algorithms': 'course_lib.experiments.sgd_theory',
    'schedule_experiment': 'course_lib.experiments.sgd_theory',
    'noise_floor_experiment': 'course_lib.experiments.sgd_theory',
    'velocity_form_path': 'course_lib.experiments.momentum',
    'buffer_form_path': 'course_lib.experiments.momentum',
    'terminal_velocity': 'course_lib.experiments.momentum',
    'convergence_factor': 'course_lib.experiments.momentum',
    'tuned_hyperparameters': 'course_lib.experiments.momentum',
    'conjugate_gradient': 'course_lib.experiments.momentum',
    'rate_sweep': 'course_lib.experiments.momentum',
    'effective_lr': 'course_lib.experiments.adaptive',
    'NoisyQuadratic': 'course_lib.experiments.adaptive',
    'SparseRegression': 'course_lib.experiments.adaptive',
    'run_with_rates': 'course_lib.experiments.adaptive',
    'run_phases': 'course_lib.experiments.adaptive',
    'switch_experiment': 'course_lib.experiments.adaptive',
    'centered_vs_plain': 'course_lib.experiments.adaptive',
    'unit_step_ratio': 'course_lib.experiments.adaptive',
    'sparse_experiment': 'course_lib.experiments.adaptive',
    'preconditioned_condition_number': 'course_lib.experiments.adaptive',
    'rate_explorer': 'course_lib.experiments.adaptive',
    'AdamNoBiasCorrection': 'course_lib.experiments.adam_family',
    'adam_update_uncorrected': 'course_lib.experiments.adam_family',
    'bias_correction_factor': 'course_lib.experiments.adam_family',
    'online_counterexample': 'course_lib.experiments.adam_family',
    'make_optimizer': 'course_lib.experiments.comparison',
    'compare_on_landscape': 'course_lib.experiments.comparison',
    'compare_on_mnist1d': 'course_lib.experiments.comparison',
    'results_table': 'course_lib.experiments.comparison',
    'linear_scaling_rule': 'course_lib.experiments.schedules',
    'warmup_then': 'course_lib.experiments.schedules',
    'make_schedule': 'course_lib.experiments.schedules',
    'schedule_values': 'course_lib.experiments.schedules',
    'compare_schedules': 'course_lib.experiments.schedules',
    'scaling_experiment': 'course_lib.experiments.schedules',
    'lr_range_test': 'course_lib.experiments.monitoring',
    'diagnose': 'course_lib.experiments.monitoring',
    'UpdateRatioMonitor': 'course_lib.experiments.monitoring',
    'good_lr_band': 'course_lib.experiments.monitoring',
    'health_signals': 'course_lib.experiments.monitoring',
}


def __getattr__(name: str):
    if name in _MODULES:
        value = _import_module(_MODULES[name])
    elif name in _NAMES:
        value = getattr(_import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'course_lib' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULES) | set(_NAMES))
