"""The distribute challenge's level 2 (its xgboost_usage.py), on a computethis cluster:
a trained XGBoost model uploaded once, predictions run on a worker that holds it.

Run it: ``make up`` in one shell (it prints a token), then in another shell::

    COMPUTETHIS_TOKEN=<printed token> python demos/model_xgboost.py

Set ``COMPUTETHIS_URL`` too if the gateway is not at http://127.0.0.1:5000. Needs
xgboost (``pip install xgboost-cpu``) and numpy. The challenge downloads the Titanic
data set; this builds a small one of the same columns locally instead.
"""

import numpy as np
import xgboost as xgb

from distribute_challenge import NpuModel, XgboostModel, artifacts

COLUMNS = ["Pclass", "Age", "Fare", "SibSp", "Parch"]


def passengers(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A Titanic-like table: class, age, fare, siblings, parents; and who survived."""
    rng = np.random.default_rng(seed)
    pclass = rng.integers(1, 4, count)
    age = rng.normal(30, 14, count).clip(1, 80)
    fare = rng.gamma(2.0, 40.0 / pclass)
    sibsp = rng.poisson(0.5, count)
    parch = rng.poisson(0.4, count)
    chance = 0.9 - 0.25 * pclass + 0.004 * (40 - age) + 0.002 * fare
    survived = (rng.random(count) < chance.clip(0.05, 0.95)).astype(float)
    return np.column_stack([pclass, age, fare, sibsp, parch]), survived


@artifacts([XgboostModel("model")])
class MyModel(NpuModel):
    def __init__(self):
        super().__init__()

    def prediction(self, x):
        out = self.model.predict(x)
        return out

    def run(self, x):
        out = self.prediction(x)
        return out


def main() -> None:
    train, survived = passengers(891, seed=0)
    test, _ = passengers(418, seed=1)
    X_y_train = xgb.DMatrix(data=train, label=survived, feature_names=COLUMNS)
    X_test = xgb.DMatrix(data=test, feature_names=COLUMNS)
    params = {
        "base_score": float(np.mean(survived)),
        "eta": 0.1,
        "max_depth": 3,
        "gamma": 3,
        "objective": "reg:squarederror",  # the challenge's reg:linear, renamed since
        "eval_metric": "mae",
    }
    xgb_model = xgb.train(params=params, dtrain=X_y_train, num_boost_round=3)

    model = MyModel()
    model.artifacts({"model": xgb_model})
    print(f"artifact uploaded: {model.last_upload_bytes} bytes")
    out = model.run(X_test)  # on a worker; the DMatrix crosses as its data
    print(f"predicted {len(out)} passengers on a worker")
    print("same as predicting here:", bool(np.allclose(out, xgb_model.predict(X_test))))
    again = MyModel()
    again.artifacts({"model": xgb_model})
    print(f"second artifacts(): {again.last_upload_bytes} bytes uploaded")
    model.close()


if __name__ == "__main__":
    main()
