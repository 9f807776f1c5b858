"""The one piece of package layout pyproject.toml cannot say: where `proxy.migrations` lives.

The Alembic folder stays at the top of the repository (`migrations/`) but is installed inside
the proxy package as `proxy.migrations`, so an installed wheel can migrate from any working
directory. `packages.find` in pyproject.toml cannot map a folder to another package name, so
discovery is done here; everything else (metadata, package data) is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    # Namespace discovery, as pyproject's `packages.find` did: `proxy/routing` has no __init__;
    # every module in migrations/versions/ ships, so a new revision needs no edit here.
    packages=[*find_namespace_packages(include=["proxy*", "worker*", "evaluator*"],
                                      exclude=["*.__pycache__"]),
              "proxy.migrations", "proxy.migrations.versions"],
    package_dir={"proxy.migrations": "migrations"},
)
