"""Install pbx.

The ``twisted/plugins`` dropin directory has no ``__init__.py`` (it must not:
it is shared with Twisted itself), so ``packages = find:`` would silently leave
it out of the wheel and ``twistd`` would not know ``pbx``.  It is named here.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "twisted.plugins"],
    package_dir={"": "src", "twisted.plugins": "twisted/plugins"},
)
