//! What a builder does with its fingerprint: record it, and with
//! `--if-changed` decide from the family whether to build, saying why.

use time::OffsetDateTime;

use super::BuildContext;
use crate::family::{self, Decision, FamilyImage};
use crate::fingerprint::Fingerprint;

/// Records `fp` in the manifest; with `--if-changed`, returns the images to
/// reuse when every location has an up-to-date one, else says why it builds.
pub fn decide(
    build: &mut BuildContext,
    fp: &Fingerprint,
    images: &[FamilyImage],
    locations: &[String],
) -> Option<Vec<FamilyImage>> {
    build.events.info(format!("fingerprint {}", fp.digest));
    build
        .manifest
        .insert("fingerprint".into(), fp.digest.clone().into());
    if !build.rebuild.if_changed {
        return None;
    }
    match family::decide(
        fp,
        images,
        locations,
        build.rebuild.max_age,
        OffsetDateTime::now_utc(),
    ) {
        Decision::Unchanged(found) => {
            for i in &found {
                build.events.info(format!(
                    "unchanged: {} is build {}, built {}, with this fingerprint",
                    i.id,
                    i.build,
                    i.built_at_text()
                ));
            }
            Some(found)
        }
        Decision::Build(reasons) => {
            for reason in reasons {
                build.events.info(format!("building: {reason}"));
            }
            None
        }
    }
}
