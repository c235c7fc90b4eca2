"""chi_scripts package."""
