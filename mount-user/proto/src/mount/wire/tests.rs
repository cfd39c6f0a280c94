//! Parse beside emit: every result type round-trips, every strict prefix of an encoding
//! fails to parse, a buffer too small gets nothing, and arbitrary bytes never panic.
use proptest::prelude::*;

use super::*;

/// `emit` into a fresh buffer of `cap` bytes: the bytes written, or the error.
fn emitted(
    cap: usize,
    emit: impl FnOnce(&mut Writer<'_>) -> Result<(), XdrError>,
) -> Result<Vec<u8>, XdrError> {
    let mut buf = vec![0u8; cap];
    let mut w = Writer::new(&mut buf);
    let res = emit(&mut w);
    let n = w.position();
    match res {
        Ok(()) => Ok(buf[..n].to_vec()),
        Err(e) => {
            assert_eq!(n, 0, "an error wrote {n} bytes");
            Err(e)
        }
    }
}

/// Every strict prefix of `bytes` fails to parse (`parses` says whether it did), and so
/// does nothing at all.
fn prefixes_fail(bytes: &[u8], parses: impl Fn(&[u8]) -> bool) -> Result<(), TestCaseError> {
    for end in 0..bytes.len() {
        prop_assert!(
            !parses(&bytes[..end]),
            "{} of {} bytes parsed",
            end,
            bytes.len()
        );
    }
    Ok(())
}

#[test]
fn fhstatus_pads_short_handles_and_refuses_long_ones() {
    let bytes = emitted(64, |w| FhStatus::Ok(&[1, 2, 3]).emit(w)).unwrap();
    assert_eq!(bytes.len(), UNIT + FHSIZE);
    let mut r = Reader::new(&bytes);
    let FhStatus::Ok(handle) = FhStatus::parse(&mut r).unwrap() else {
        panic!("not OK")
    };
    assert_eq!(&handle[..3], &[1, 2, 3]);
    assert!(handle[3..].iter().all(|&b| b == 0) && handle.len() == FHSIZE);
    assert!(r.is_empty());
    assert_eq!(
        emitted(64, |w| FhStatus::Ok(&[0; FHSIZE + 1]).emit(w)),
        Err(XdrError::TooLong {
            len: FHSIZE + 1,
            max: FHSIZE
        })
    );
    assert_eq!(
        emitted(64, |w| FhStatus::Ok(&[0; FHSIZE]).emit(w).map(drop)).map(|b| b.len()),
        Ok(36)
    );
    assert_eq!(
        emitted(35, |w| FhStatus::Ok(&[0; 4]).emit(w)),
        Err(XdrError::Overflow)
    );
}

#[test]
fn a_status_of_zero_is_not_an_error() {
    assert_eq!(
        emitted(8, |w| FhStatus::Err(0).emit(w)),
        Err(XdrError::BadValue(0))
    );
    assert_eq!(
        emitted(8, |w| MountRes3::Err(0).emit(w)),
        Err(XdrError::BadValue(0))
    );
}

#[test]
fn mountres3_layout() {
    let flavors = [0, 0, 0, 1, 0, 5, 0xf3, 0x75];
    let res = MountRes3::Ok {
        handle: &[0xab; 5],
        flavors: Flavors::from_be_words(&flavors).unwrap(),
    };
    let bytes = emitted(128, |w| res.emit(w)).unwrap();
    let mut want = vec![
        0, 0, 0, 0, 0, 0, 0, 5, 0xab, 0xab, 0xab, 0xab, 0xab, 0, 0, 0,
    ];
    want.extend([0, 0, 0, 2, 0, 0, 0, 1, 0, 5, 0xf3, 0x75]);
    assert_eq!(bytes, want);
    let parsed = MountRes3::parse(&mut Reader::new(&bytes)).unwrap();
    assert_eq!(parsed, res);
    let MountRes3::Ok { flavors, .. } = parsed else {
        panic!("not OK")
    };
    assert_eq!(flavors.iter().collect::<Vec<_>>(), [1, 390_005]);
    assert_eq!(Flavors::from_be_words(&[0; 5]), None);
    // A count the input cannot hold is an error, not an allocation.
    let huge = [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
    assert!(MountRes3::parse(&mut Reader::new(&huge)).is_err());
}

#[test]
fn the_handle_only_parse_forgives_the_flavor_list_and_nothing_else() {
    let handle_only = [0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4];
    let bad_count = [0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff];
    for bytes in [&handle_only[..], &bad_count[..]] {
        assert!(MountRes3::parse(&mut Reader::new(bytes)).is_err(), "strict");
        assert_eq!(
            MountRes3::parse_handle(&mut Reader::new(bytes)),
            Ok(MountRes3::Ok {
                handle: &[1, 2, 3, 4],
                flavors: Flavors::default(),
            })
        );
    }
    let mut long = vec![0, 0, 0, 0, 0, 0, 0, 65];
    long.extend([7; 68]);
    assert!(matches!(
        MountRes3::parse_handle(&mut Reader::new(&long)),
        Err(XdrError::TooLong { len: 65, .. })
    ));
    assert_eq!(
        MountRes3::parse_handle(&mut Reader::new(&[0, 0, 0, 13])),
        Ok(MountRes3::Err(13))
    );
    assert!(MountRes3::parse_handle(&mut Reader::new(&[0, 0, 0, 0, 0, 0])).is_err());
}

#[test]
fn lists_refuse_what_the_protocol_cannot_carry() {
    let long_dir = vec![b'a'; MNTPATHLEN + 1];
    let long_group = vec![b'g'; MNTNAMLEN + 1];
    let no_groups: [&[u8]; 0] = [];
    assert!(matches!(
        emitted(4096, |w| ExportNode::emit_entry(w, &long_dir, no_groups)),
        Err(XdrError::TooLong { .. })
    ));
    assert!(matches!(
        emitted(4096, |w| ExportNode::emit_entry(
            w,
            b"/a",
            [&long_group[..]]
        )),
        Err(XdrError::TooLong { .. })
    ));
    let body = MountBody {
        hostname: &long_group,
        directory: b"/a",
    };
    assert!(matches!(
        emitted(4096, |w| body.emit_entry(w)),
        Err(XdrError::TooLong { .. })
    ));
    // An unterminated list, and an empty one.
    assert!(ExportList::parse(&mut Reader::new(&[0, 0, 0, 1, 0, 0, 0, 0])).is_err());
    let empty = ExportList::parse(&mut Reader::new(&[0, 0, 0, 0])).unwrap();
    assert!(empty.is_empty());
    assert!(MountBodies::parse(&mut Reader::new(&[0, 0, 0, 0]))
        .unwrap()
        .is_empty());
}

#[test]
fn ppathcnf_values_outside_their_c_types_are_refused() {
    let mut words = [0u8; 40];
    words[4..8].copy_from_slice(&0x8000u32.to_be_bytes()); // max_canon: not an i16
    assert_eq!(
        PathConf::parse(&mut Reader::new(&words)),
        Err(XdrError::BadValue(0x8000))
    );
    let mut words = [0u8; 40];
    words[24..28].copy_from_slice(&0x100u32.to_be_bytes()); // vdisable: not a u8
    assert_eq!(
        PathConf::parse(&mut Reader::new(&words)),
        Err(XdrError::BadValue(0x100))
    );
}

fn status() -> impl Strategy<Value = u32> {
    1u32..=u32::MAX
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

/// Export entries: a directory and its groups.
fn export_entries() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<Vec<u8>>)>> {
    let entry = (
        prop_oneof![bytes(40), bytes(MNTPATHLEN)],
        proptest::collection::vec(prop_oneof![bytes(20), bytes(MNTNAMLEN)], 0..4),
    );
    proptest::collection::vec(entry, 0..6)
}

proptest! {
    #[test]
    fn fhstatus_round_trips(handle in proptest::collection::vec(any::<u8>(), FHSIZE), stat in status()) {
        for res in [FhStatus::Ok(&handle), FhStatus::Err(stat)] {
            let bytes = emitted(64, |w| res.emit(w)).unwrap();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(FhStatus::parse(&mut r), Ok(res));
            prop_assert!(r.is_empty());
            prefixes_fail(&bytes, |b| FhStatus::parse(&mut Reader::new(b)).is_ok())?;
            prop_assert_eq!(emitted(bytes.len() - 1, |w| res.emit(w)), Err(XdrError::Overflow));
        }
    }

    #[test]
    fn mountres3_round_trips(handle in bytes(FHSIZE3), flavors in proptest::collection::vec(any::<u32>(), 0..20),
                             stat in status()) {
        let words: Vec<u8> = flavors.iter().flat_map(|f| f.to_be_bytes()).collect();
        let ok = MountRes3::Ok { handle: &handle, flavors: Flavors::from_be_words(&words).unwrap() };
        for res in [ok, MountRes3::Err(stat)] {
            let bytes = emitted(512, |w| res.emit(w)).unwrap();
            let mut r = Reader::new(&bytes);
            let parsed = MountRes3::parse(&mut r);
            prop_assert_eq!(parsed, Ok(res));
            prop_assert!(r.is_empty());
            if let Ok(MountRes3::Ok { flavors: f, .. }) = parsed {
                prop_assert_eq!(f.iter().collect::<Vec<_>>(), flavors.clone());
            }
            prefixes_fail(&bytes, |b| MountRes3::parse(&mut Reader::new(b)).is_ok())?;
            prop_assert_eq!(emitted(bytes.len() - 1, |w| res.emit(w)), Err(XdrError::Overflow));
        }
    }

    #[test]
    fn export_lists_round_trip(entries in export_entries()) {
        let mut buf = vec![0u8; 16 * 1024];
        let mut w = Writer::new(&mut buf);
        for (dir, groups) in &entries {
            let before = w.position();
            ExportNode::emit_entry(&mut w, dir, groups.iter().map(Vec::as_slice)).unwrap();
            prop_assert_eq!(
                w.position() - before,
                ExportNode::entry_len(dir, groups.iter().map(Vec::as_slice))
            );
        }
        emit_list_end(&mut w).unwrap();
        let n = w.position();
        let bytes = &buf[..n];
        let mut r = Reader::new(bytes);
        let list = ExportList::parse(&mut r).unwrap();
        prop_assert!(r.is_empty());
        let got: Vec<(Vec<u8>, Vec<Vec<u8>>)> = list
            .iter()
            .map(|e| (e.dir.to_vec(), e.groups.iter().map(<[u8]>::to_vec).collect()))
            .collect();
        prop_assert_eq!(&got, &entries);
        prop_assert_eq!(list.is_empty(), entries.is_empty());
        prop_assert_eq!(emitted(n, |w| list.emit(w)).unwrap(), bytes.to_vec());
        prefixes_fail(bytes, |b| ExportList::parse(&mut Reader::new(b)).is_ok())?;
    }

    #[test]
    fn mount_lists_round_trip(entries in proptest::collection::vec((bytes(MNTNAMLEN), bytes(MNTPATHLEN)), 0..6)) {
        let mut buf = vec![0u8; 16 * 1024];
        let mut w = Writer::new(&mut buf);
        for (hostname, directory) in &entries {
            MountBody { hostname, directory }.emit_entry(&mut w).unwrap();
        }
        emit_list_end(&mut w).unwrap();
        let n = w.position();
        let bytes = &buf[..n];
        let mut r = Reader::new(bytes);
        let list = MountBodies::parse(&mut r).unwrap();
        prop_assert!(r.is_empty());
        let got: Vec<(Vec<u8>, Vec<u8>)> =
            list.iter().map(|b| (b.hostname.to_vec(), b.directory.to_vec())).collect();
        prop_assert_eq!(&got, &entries);
        prop_assert_eq!(emitted(n, |w| list.emit(w)).unwrap(), bytes.to_vec());
        prefixes_fail(bytes, |b| MountBodies::parse(&mut Reader::new(b)).is_ok())?;
    }

    #[test]
    fn ppathcnf_round_trips(link_max in any::<i32>(), shorts in any::<[i16; 5]>(), vdisable in any::<u8>(),
                            xxx in any::<i8>(), mask in any::<[i16; 2]>()) {
        let pc = PathConf {
            link_max,
            max_canon: shorts[0],
            max_input: shorts[1],
            name_max: shorts[2],
            path_max: shorts[3],
            pipe_buf: shorts[4],
            vdisable,
            xxx,
            mask,
        };
        let bytes = emitted(40, |w| pc.emit(w)).unwrap();
        prop_assert_eq!(PathConf::parse(&mut Reader::new(&bytes)), Ok(pc));
        prefixes_fail(&bytes, |b| PathConf::parse(&mut Reader::new(b)).is_ok())?;
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = FhStatus::parse(&mut Reader::new(&bytes));
        let _ = MountRes3::parse(&mut Reader::new(&bytes));
        let _ = PathConf::parse(&mut Reader::new(&bytes));
        if let Ok(list) = ExportList::parse(&mut Reader::new(&bytes)) {
            for e in list.iter() {
                prop_assert!(e.dir.len() <= MNTPATHLEN);
                prop_assert!(e.groups.iter().all(|g| g.len() <= MNTNAMLEN));
            }
        }
        if let Ok(list) = MountBodies::parse(&mut Reader::new(&bytes)) {
            prop_assert!(list.iter().count() <= bytes.len() / 12);
        }
    }
}
