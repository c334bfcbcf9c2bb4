"""Writes the Parquet seeds of the `parquet` fuzz target (fuzz/corpus/parquet/seed-*.parquet):
small files in the shapes the drift reader meets (floats with nulls and NaN, integers, plain
and dictionary strings, booleans, timestamps, decimals; snappy and uncompressed; several row
groups). Needs pyarrow (the harness venv has it: tests/harness/install.sh).

    python fuzz/corpus/parquet-seeds.py
"""

import decimal
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

OUT = pathlib.Path(__file__).parent / "parquet"


def write(name, table, **kwargs):
    path = OUT / f"seed-{name}.parquet"
    pq.write_table(table, path, **kwargs)
    assert path.stat().st_size < 20_000, path


def main():
    OUT.mkdir(exist_ok=True)
    n = 40
    mixed = pa.table(
        {
            "amount": pa.array([i * 1.5 if i % 7 else None for i in range(n)], pa.float64()),
            "score": pa.array([float("nan") if i == 3 else i / 10 for i in range(n)], pa.float32()),
            "count": pa.array(range(n), pa.int64()),
            "small": pa.array([i % 100 for i in range(n)], pa.int8()),
            "channel": pa.array([["web", "pos", None, "atm"][i % 4] for i in range(n)]),
            "flag": pa.array([i % 3 == 0 for i in range(n)]),
        }
    )
    write("mixed-snappy", mixed, row_group_size=16)
    write("mixed-plain", mixed, compression="none", use_dictionary=False)
    write(
        "dictionary",
        pa.table({"channel": pa.array(["web", "pos", "web", None] * 5).dictionary_encode()}),
    )
    write(
        "time-decimal",
        pa.table(
            {
                "at": pa.array(range(10), pa.timestamp("s")),
                "price": pa.array([decimal.Decimal(f"{i}.25") for i in range(10)], pa.decimal128(9, 2)),
                "x": pa.array([1.0] * 10),
            }
        ),
        compression="none",
    )
    write("empty", pa.table({"x": pa.array([], pa.float64())}))


if __name__ == "__main__":
    main()
