"""An official-format KuaiRand log written from the synthetic short-video log (not a test module).

    write_official_log(path, rows=2000, seed=0, delimiter=",") -> path
        The first ``rows`` impressions of ``pfd_ref.data.shortvideo.simulate`` (rows in day
        order) under the column names of the KuaiRand-1K / 27K standard logs, in their order:
        ``user_id, video_id, date, hourmin, time_ms, is_click, is_like, is_follow, is_comment,
        is_forward, is_hate, long_view, play_time_ms, duration_ms, profile_stay_time,
        comment_stay_time, is_profile_enter, is_rand, tab``. Raw ids are offset (users by
        1000, videos by 5000) so that the loader's remapping is exercised; ``is_hate`` is 1 on
        about 1 % of the played rows without a like; ``is_rand`` and ``tab`` are 0 and 1.
"""

from __future__ import annotations

import numpy as np

from pfd_ref.data.shortvideo import ShortVideoConfig, simulate

OFFICIAL_COLUMNS = ("user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
                    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
                    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab")


def write_official_log(path, rows: int = 2000, seed: int = 0, delimiter: str = ","):
    days = 14
    per_user_day = max(1, -(-rows // (200 * days)))
    log = simulate(ShortVideoConfig(n_users=200, n_videos=400, n_authors=80, n_days=days, test_days=4,
                                    impressions_per_user_day=per_user_day, seed=seed))
    rng = np.random.default_rng([seed, 1])
    n = min(rows, len(log["day"]))
    take = {name: np.asarray(values)[:n] for name, values in log.items()}
    minute = rng.integers(0, 60, n)
    start_ms = 1649376000000  # 2022-04-08 00:00 UTC
    columns = {
        "user_id": take["user_id"] + 1000, "video_id": take["video_id"] + 5000, "date": 20220408 + take["day"],
        "hourmin": take["hour"] * 100 + minute,
        "time_ms": start_ms + take["day"] * 86_400_000 + (take["hour"] * 60 + minute) * 60_000,
        "is_hate": ((take["is_click"] == 1) & (take["is_like"] == 0) & (rng.random(n) < 0.01)).astype(np.int8),
        "is_rand": np.zeros(n, dtype=np.int8), "tab": np.ones(n, dtype=np.int8),
    }
    with open(path, "w") as handle:
        handle.write(delimiter.join(OFFICIAL_COLUMNS) + "\n")
        table = [columns[name] if name in columns else take[name] for name in OFFICIAL_COLUMNS]
        for row in zip(*table):
            handle.write(delimiter.join(str(int(value)) for value in row) + "\n")
    return path
