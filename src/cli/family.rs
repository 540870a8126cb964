//! What `images` and `prune` share: which family, where to look for it, and
//! listing every place at once.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::{SelectArgs, VarArgs};
use crate::error::Error;
use crate::family::listing::{ImageStore, Listing};
use crate::template::{self, Template};

#[derive(Args)]
pub struct FamilyArgs {
    /// The template file: its name and version are the family, its sources
    /// say where the images are.
    #[arg(
        value_name = "FILE",
        env = "IMGBUILD_TEMPLATE",
        required_unless_present = "name"
    )]
    file: Option<PathBuf>,

    /// Without a template: the image name (AWS only; every version unless --version).
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "file",
        env = "IMGBUILD_FAMILY_NAME"
    )]
    name: Option<String>,

    /// With --name: only this version.
    #[arg(
        long,
        value_name = "VERSION",
        requires = "name",
        env = "IMGBUILD_FAMILY_VERSION"
    )]
    version: Option<String>,

    /// Look in these AWS regions instead of the template's (repeatable or comma-separated).
    #[arg(
        long = "region",
        value_name = "REGION",
        env = "IMGBUILD_REGIONS",
        value_delimiter = ','
    )]
    regions: Vec<String>,

    #[command(flatten)]
    select: SelectArgs,

    #[command(flatten)]
    vars: VarArgs,
}

/// The family asked for, and the places it is kept.
pub struct Family {
    pub name: String,
    /// `None` with `--name` alone: every version.
    pub version: Option<String>,
    pub template: Option<Template>,
    pub stores: Vec<Arc<dyn ImageStore>>,
}

impl Family {
    /// `web 1.2`, or `web` for every version.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{} {v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// One place and what it holds.
pub struct Place {
    pub store: Arc<dyn ImageStore>,
    pub listing: Listing,
}

impl FamilyArgs {
    /// Loads the template (if any) and the places its sources keep images.
    pub async fn family(&self) -> Result<Family, Error> {
        let Some(file) = &self.file else {
            let name = self
                .name
                .clone()
                .ok_or_else(|| Error::Usage("give a template FILE or --name".into()))?;
            let stores = crate::builder::amazon_ebs::stores(
                None,
                &template::Scope::default(),
                &name,
                self.version.as_deref(),
                &self.regions,
            )
            .await
            .map_err(Error::Usage)?;
            return Ok(Family {
                name,
                version: self.version.clone(),
                template: None,
                stores,
            });
        };
        let template = template::load(file, &self.vars.inputs()).map_err(Error::Invalid)?;
        let mut stores = Vec::new();
        let mut failures = Vec::new();
        for source in self.select.sources(&template)? {
            match source.config.image_stores(&template, &self.regions).await {
                Ok(found) => stores.extend(found),
                Err(e) => failures.push(format!("source `{}`: {e}", source.name)),
            }
        }
        if !failures.is_empty() {
            return Err(Error::BuildFailed(failures.join("\nerror: ")));
        }
        Ok(Family {
            name: template.name.clone(),
            version: Some(template.version.clone()),
            template: Some(template),
            stores,
        })
    }
}

/// Lists every place at once. Places with the same location (two sources
/// building in one region) are one place. Every failure is returned, each
/// naming its place.
pub async fn list(stores: &[Arc<dyn ImageStore>]) -> (Vec<Place>, Vec<String>) {
    let mut lookups = tokio::task::JoinSet::new();
    for (n, store) in stores.iter().enumerate() {
        let store = store.clone();
        lookups.spawn(async move { (n, store.list().await) });
    }
    let mut found = Vec::new();
    let mut failures = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        match joined {
            Ok((n, Ok(listing))) => found.push((n, listing)),
            Ok((_, Err(e))) => failures.push(e.to_string()),
            Err(e) => failures.push(e.to_string()),
        }
    }
    found.sort_by_key(|(n, _)| *n);
    let mut places: Vec<Place> = Vec::new();
    for (n, listing) in found {
        let store = &stores[n];
        match places
            .iter_mut()
            .find(|p| p.store.location() == store.location())
        {
            Some(place) => {
                for image in listing.images {
                    if !place
                        .listing
                        .images
                        .iter()
                        .any(|i| i.image.id == image.image.id)
                    {
                        place.listing.images.push(image);
                    }
                }
                place.listing.held.extend(listing.held);
            }
            None => places.push(Place {
                store: store.clone(),
                listing,
            }),
        }
    }
    failures.sort();
    (places, failures)
}

pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::BuildFailed(format!("cannot start the runtime: {e}")))
}
