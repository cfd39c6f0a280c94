//! Option lists: defaults, per-flavor sections, every exports(5) option, errors.
use super::*;

fn opts(list: &str) -> Result<Options, OptionError> {
    let mut o = Options::default();
    o.apply_list(list).map(|()| o)
}

#[test]
fn defaults_are_ro_secure_sys() {
    let o = opts("").unwrap();
    assert!(o.read_only);
    assert!(o.secure);
    assert_eq!(o.effective_flavors(), vec![AUTH_SYS]);
}

#[test]
fn rw_insecure_and_sec_order() {
    let o = opts("rw,insecure,sec=krb5p:krb5i:sys").unwrap();
    assert!(!o.read_only);
    assert!(!o.secure);
    assert_eq!(
        o.effective_flavors(),
        vec![AUTH_KRB5P, AUTH_KRB5I, AUTH_SYS]
    );
    assert_eq!(o.describe(), "rw,insecure,sec=krb5p:krb5i:sys");
}

#[test]
fn flavor_aliases() {
    assert_eq!(
        opts("sec=unix:null").unwrap().effective_flavors(),
        vec![AUTH_SYS, AUTH_NONE]
    );
    assert_eq!(
        opts("sec=sys:unix").unwrap().effective_flavors(),
        vec![AUTH_SYS],
        "deduplicated"
    );
}

#[test]
fn sec_in_later_list_adds_to_defaults_as_nfs_utils() {
    let mut o = opts("sec=krb5").unwrap();
    o.apply_list("sec=sys,sec=none,sec=krb5").unwrap();
    assert_eq!(o.effective_flavors(), vec![AUTH_KRB5, AUTH_SYS, AUTH_NONE]);
}

fn flags(o: &Options, flavor: u32) -> FlavorFlags {
    o.flavor_sections()
        .into_iter()
        .find(|(f, _)| *f == flavor)
        .map(|(_, f)| f)
        .unwrap()
}

#[test]
fn options_after_sec_apply_to_its_flavors() {
    // The exports(5) example: krb5 and krb5i read-write, sys read-only.
    let o = opts("sec=krb5:krb5i,rw,sec=sys,ro").unwrap();
    assert_eq!(o.effective_flavors(), vec![AUTH_KRB5, AUTH_KRB5I, AUTH_SYS]);
    assert!(!flags(&o, AUTH_KRB5).read_only);
    assert!(!flags(&o, AUTH_KRB5I).read_only);
    assert!(flags(&o, AUTH_SYS).read_only);
    // Options before any sec= set the rule, and flavors added later start from it.
    let o = opts("rw,insecure,no_root_squash,sec=sys:krb5p,all_squash,sec=none").unwrap();
    let sys = flags(&o, AUTH_SYS);
    assert!(!sys.read_only && !sys.secure && !sys.root_squash && sys.all_squash);
    let none = flags(&o, AUTH_NONE);
    assert!(none.all_squash, "added after all_squash set the rule");
    assert_eq!(
        o.describe_flavors(),
        "sec=sys(rw,insecure,no_root_squash,all_squash) \
         sec=krb5p(rw,insecure,no_root_squash,all_squash) \
         sec=none(rw,insecure,no_root_squash,all_squash)"
    );
    // An option list without sec= leaves inherited flavors' options alone (nfs-utils).
    let mut o = opts("sec=krb5,rw").unwrap();
    o.apply_list("ro").unwrap();
    assert!(o.read_only);
    assert!(!flags(&o, AUTH_KRB5).read_only);
    // Without sec=, sys carries the rule's final options.
    assert!(!flags(&opts("rw").unwrap(), AUTH_SYS).read_only);
}

#[test]
fn every_exports5_option_is_accepted() {
    let all = "ro,rw,secure,insecure,sync,async,wdelay,no_wdelay,hide,nohide,crossmnt,\
               nocrossmnt,subtree_check,no_subtree_check,insecure_locks,secure_locks,\
               no_auth_nlm,auth_nlm,mp,mp=/srv,mountpoint,mountpoint=/srv,fsid=1,fsid=root,\
               fsid=6f1c3a2e-8d2b-4c1f-9e3a-0123456789ab,nordirplus,\
               refer=/a@h1+h2:/b@h3,replicas=/a@h1,pnfs,no_pnfs,security_label,root_squash,\
               no_root_squash,all_squash,no_all_squash,anonuid=65534,anongid=-2,\
               sec=sys:krb5:krb5i:krb5p:none,xprtsec=tls:mtls:none,acl,no_acl,\
               mapping=identity,map_identity,map_daemon,reexport=auto-fsidnum,\
               reexport=predefined-fsidnum,reexport=none,squash_uids=0-15,20,25-30,\
               squash_gids=7";
    let o = opts(all).unwrap();
    assert!(o.describe().contains("reexport=none"), "{}", o.describe());
    assert_eq!(o.kept["squash_uids"], "squash_uids=0-15,20,25-30");
    assert!(matches!(
        opts("squash_uids=x"),
        Err(OptionError::Malformed(_))
    ));
    assert_eq!(opts("rw,20"), Err(OptionError::Unknown("20".into())));
}

#[test]
fn kept_options_override_their_opposite() {
    let o = opts("sync,no_subtree_check,async,anonuid=-2,mp=/srv,crossmnt").unwrap();
    assert_eq!(
        o.describe(),
        "ro,secure,sec=sys,anonuid=-2,crossmnt,mp=/srv,no_subtree_check,async"
    );
}

#[test]
fn errors() {
    assert_eq!(opts("rx"), Err(OptionError::Unknown("rx".into())));
    assert_eq!(opts("foo=1"), Err(OptionError::Unknown("foo=1".into())));
    assert!(matches!(opts("sec=krb6"), Err(OptionError::Malformed(m)) if m.contains("krb6")));
    assert!(matches!(opts("rw=1"), Err(OptionError::Malformed(m)) if m.contains("takes no value")));
    assert!(matches!(opts("sec"), Err(OptionError::Malformed(m)) if m.contains("needs a value")));
    assert!(matches!(opts("rw,,ro"), Err(OptionError::Malformed(m)) if m.contains("empty")));
    assert!(matches!(opts("fsid=abc"), Err(OptionError::Malformed(_))));
    assert!(matches!(opts("anonuid=x"), Err(OptionError::Malformed(_))));
    assert!(matches!(
        opts("mountpoint=rel"),
        Err(OptionError::Malformed(_))
    ));
    assert!(matches!(opts("fh=abc"), Err(OptionError::Malformed(_))));
    assert!(matches!(opts("reexport=x"), Err(OptionError::Malformed(_))));
    assert!(matches!(opts("mapping=x"), Err(OptionError::Malformed(_))));
    assert!(matches!(
        opts("no_root_squash=1"),
        Err(OptionError::Malformed(_))
    ));
}

#[test]
fn fsid_forms() {
    assert_eq!(opts("fsid=0").unwrap().fsid.as_deref(), Some("0"));
    assert_eq!(opts("fsid=root").unwrap().fsid.as_deref(), Some("root"));
    assert_eq!(opts("fsid=0x1f").unwrap().fsid.as_deref(), Some("31"));
    assert_eq!(opts("fsid=017").unwrap().fsid.as_deref(), Some("15"));
    assert!(opts("fsid=09").is_err());
    assert!(opts("fsid=+5").is_err());
    assert!(opts("fsid=4294967296").is_err());
    let u = "6F1C3A2E-8D2B-4C1F-9E3A-0123456789AB";
    assert_eq!(
        opts(&format!("fsid={u}")).unwrap().fsid.as_deref(),
        Some("6f1c3a2e8d2b4c1f9e3a0123456789ab")
    );
    assert!(
        opts("fsid=6f1c3a2e8d2b4c1f9e3a0123456789a").is_err(),
        "31 digits"
    );
}
