"""A campaign on an imported dataset is scored on the split recorded at import.

Real Jacquard samples, three objects imported with an object-wise split that holds one
object out: the campaign recipe's default split (10 % of 3 objects rounds to none) has
no test image, so before, the campaign was refused; now it takes the imported split, and
every model is evaluated on exactly those images (`EvaluateJobCreate.image_ids`).
"""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa

from regrasp.data.ingest import SplitSpec, import_dataset, open_dataset
from regrasp.platform.errors import Conflict
from regrasp.platform.store.db.engine import session_scope
from regrasp.platform.store.db.tables import Image
from regrasp.platform.store.objects import open_store
from regrasp.refine.campaigns.config import CampaignConfig
from regrasp.workflows.campaigns import machine


@pytest.fixture
def imported(migrated_engine, file_store_url, jacquard_samples, tmp_path):
    root = tmp_path / "three"
    for folder in sorted(p for p in jacquard_samples.iterdir() if p.is_dir())[:3]:
        shutil.copytree(folder, root / folder.name)
    store = open_store(file_store_url)
    with open_dataset("jacquard", path=root) as dataset:
        result = import_dataset(
            migrated_engine,
            store,
            dataset,
            name="three",
            split=SplitSpec(kind="object", seed=1, test_fraction=0.34),
            workers=2,
        )
    return result.dataset_id


def test_campaign_uses_the_split_recorded_at_import(migrated_engine, imported):
    with session_scope(migrated_engine) as s:
        recorded = sorted(
            s.scalars(
                sa.select(Image.id).where(Image.dataset_id == imported, Image.split == "test")
            )
        )
        total = s.scalar(sa.select(sa.func.count(Image.id)).where(Image.dataset_id == imported))
        assert 0 < len(recorded) < total
        config = CampaignConfig(networks=["ggcnn"], versions=[0])
        campaign = machine.create_campaign(s, dataset_id=imported, config=config, created_by=None)
        assert sorted(campaign.test_image_ids) == recorded
        # The imported test images are held out of every training run.
        held_out = config.train_config("ggcnn", exclude=recorded)["exclude_image_ids"]
        assert set(recorded) <= set(held_out)

        # The recipe alone (default 10 % of three objects) has no test image: refused.
        with pytest.raises(Conflict, match="test split of version 0 is empty"):
            machine.create_campaign(
                s,
                dataset_id=imported,
                config=CampaignConfig(networks=["ggcnn"], versions=[0], test_split="recipe"),
                created_by=None,
            )


def test_imported_split_asked_for_without_one_is_refused(migrated_engine, imported):
    with session_scope(migrated_engine) as s:
        s.execute(sa.update(Image).where(Image.dataset_id == imported).values(split=None))
        with pytest.raises(Conflict, match="no test image recorded at import"):
            machine.create_campaign(
                s,
                dataset_id=imported,
                config=CampaignConfig(networks=["ggcnn"], versions=[0], test_split="imported"),
                created_by=None,
            )
