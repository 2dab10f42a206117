"""course_lib: the library behind the course *Optimization for Training Deep Models*.

Every method the chapters use lives here, once; notebooks import it.  Public names are
re-exported below: first the core (optimizers, landscapes, curvature, training loop, data,
models, plots, widgets), then each chapter's experiments in course order (the modules
themselves, e.g. ``course_lib.erm``, hold the chapters' settings and the rest of their API).
"""
from course_lib.utils import seed_everything, get_device

# optim
from course_lib.optim import SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, NAdam, OPTIMIZERS

# landscapes, curvature, plots, widgets
from course_lib.landscapes import (Landscape, Quadratic, Rosenbrock, Beale, Saddle, Plateau,
                                   Cliff, LocalMinima, Trajectory, run_optimizer, newton_step,
                                   newton_path, check_grad)
from course_lib.curvature import (hvp, hessian_matrix, top_eigenvalue, lanczos_eigenvalues,
                                  hessian_spectrum_density, gradient_curvature,
                                  minibatch_gradient_noise)
from course_lib import landscapes, curvature, plots, widgets

# data, models, training loop
from course_lib.data import (Split, train_val_split, mnist1d, digits, polynomial_features,
                             PolynomialRegressionTask, GaussianClassificationTask, load_idx,
                             load_mnist_folder)
from course_lib.models import mlp, small_cnn, VanillaRNN
from course_lib.train import train, evaluate, History, EarlyStopping, TrainingDiverged

# learning vs pure optimization (chapter 1)
from course_lib import erm
from course_lib.erm import (empirical_risk, fit_polynomial, risk_vs_degree, risk_vs_n,
                            zero_one_loss, logistic_loss, train_logistic_regression,
                            early_stopping_experiment)

# batch and minibatch algorithms (chapter 2); its largest_stable_lr stays in the module
# (course_lib.minibatch.largest_stable_lr), the top-level name is chapter 3's
from course_lib import minibatch
from course_lib.minibatch import (per_example_gradients, gradient_moments,
                                  gradient_noise_experiment, redundancy_experiment,
                                  time_per_update, activation_bytes, critical_lr,
                                  stability_experiment, ordering_experiment,
                                  generalization_experiment, loss_vs_examples)

# ill-conditioning (chapter 3)
from course_lib import conditioning
from course_lib.conditioning import (taylor_check, gd_losses, largest_stable_lr,
                                     iterations_to_tolerance, conditioning_sweep,
                                     train_with_curvature, newton_cost)

# local minima (chapter 4)
from course_lib import local_minima
from course_lib.local_minima import (permute_hidden_units, rescale_hidden_units,
                                     count_permutation_symmetries, gd_basins,
                                     teacher_student_task, train_from_many_seeds,
                                     stationarity_ratio, inspect_end_point)

# saddle points and plateaus (chapter 5)
from course_lib import saddles
from course_lib.saddles import (hessian_index, classify_critical_point, RandomField,
                                DeepLinearNetwork, find_critical_points)

# cliffs (chapter 6)
from course_lib import cliffs
from course_lib.cliffs import (RNNCliff, wall_slopes, growth_factor, clip_gradient, angle_between,
                              step_lengths, single_step, compare_clipping, catapult_census,
                              threshold_sweep)

# long-term dependencies (chapter 7)
from course_lib import long_term
from course_lib.long_term import (matrix_with_eigenvalues, eigen_power, power_norms, log_slope,
                                  state_gradient_norms, rnn_gradient_experiment, backprop_norms,
                                  compare_shared_independent)

# inexact gradients, costs without a minimum, local vs global structure, limits (chapter 8)
from course_lib import inexact
from course_lib.inexact import (noisy_sgd, predicted_noise_floor, biased_fixed_point,
                                max_margin_vector, logistic_regression_gd, gaussian_nll,
                                fit_gaussian_precision, Mountain, descend_from, path_length,
                                parity_task, parity_network, width_sweep)

# SGD and learning rates (chapter 9)
from course_lib import sgd_theory
from course_lib.sgd_theory import (NoisyLinearRegression, LeastSquares, minibatch_sgd, stream_sgd,
                                   compare_algorithms, schedule_experiment,
                                   noise_floor_experiment)

# momentum and Nesterov (chapter 10)
from course_lib import momentum
from course_lib.momentum import (velocity_form_path, buffer_form_path, terminal_velocity,
                                 convergence_factor, tuned_hyperparameters, conjugate_gradient,
                                 rate_sweep)

# adaptive learning rates (chapter 11)
from course_lib import adaptive
from course_lib.adaptive import (effective_lr, NoisyQuadratic, SparseRegression, run_with_rates,
                                 run_phases, switch_experiment, centered_vs_plain,
                                 unit_step_ratio, sparse_experiment,
                                 preconditioned_condition_number, rate_explorer)

# Adam and its family, comparing optimizers (chapter 12)
from course_lib import adam_family, comparison
from course_lib.adam_family import (AdamNoBiasCorrection, adam_update_uncorrected,
                                    bias_correction_factor, online_counterexample)
from course_lib.comparison import (make_optimizer, compare_on_landscape, compare_on_mnist1d,
                                   results_table)

# learning-rate schedules (chapter 13)
from course_lib import schedules
from course_lib.schedules import (linear_scaling_rule, warmup_then, make_schedule, schedule_values,
                                  compare_schedules, scaling_experiment)

# choosing and monitoring an optimizer (chapter 14)
from course_lib import monitoring
from course_lib.monitoring import (lr_range_test, diagnose, UpdateRatioMonitor, good_lr_band,
                                   health_signals)
