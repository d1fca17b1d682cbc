//! Self-tests of the harness: the shop fixtures, the components, and the load generator, without zdd.

mod support;

use support::shop;

#[test]
fn every_version_materialises_with_its_version_string() {
    for version in shop::VERSIONS {
        let dir = tempfile::tempdir().unwrap();
        shop::materialise(version, dir.path()).unwrap();
        assert!(dir.path().join("manage.py").is_file(), "{version}: manage.py");
        assert!(!dir.path().join("PARENT").exists(), "{version}: overlay metadata copied");
        assert_eq!(shop::version_of(dir.path()).unwrap(), *version);
    }
}

#[test]
fn v3_versions_build_on_v2() {
    let dir = tempfile::tempdir().unwrap();
    shop::materialise("v3-unsafe-migration", dir.path()).unwrap();
    let migrations = dir.path().join("catalog/migrations");
    assert!(migrations.join("0002_product_description.py").is_file());
    assert!(migrations.join("0003_remove_product_price_cents.py").is_file());
}

#[test]
fn an_unknown_version_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(shop::materialise("v9", dir.path()).is_err());
}
