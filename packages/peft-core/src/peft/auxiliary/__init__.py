"""Auxiliary modules: trained and saved with an adapter without being adapter layers.

An adapter config may list modules to train in full (``modules_to_save``) and embedding rows to train
(``trainable_token_indices``); ``add_auxiliary_modules`` wraps them, in every tuner and in prompt-learning models.
Layers tied to the input embedding (``ensure_weight_tying``) share its wrapper's state (``peft.auxiliary.tying``).
"""

from peft.auxiliary.injection import add_auxiliary_modules
from peft.auxiliary.trainable_tokens import TrainableTokensLayer
from peft.auxiliary.wrappers import AuxiliaryTrainingWrapper, ModulesToSaveWrapper, TrainableTokensWrapper

__all__ = [
    "AuxiliaryTrainingWrapper",
    "ModulesToSaveWrapper",
    "TrainableTokensLayer",
    "TrainableTokensWrapper",
    "add_auxiliary_modules",
]
