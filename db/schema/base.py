"""The one MetaData every table module registers on."""

import sqlalchemy as sa

metadata = sa.MetaData()
